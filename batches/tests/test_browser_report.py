"""In Chromium: the batch page's report with its server-made SVG charts, and
the admin's *Export results* action downloading the CSV.

Screenshots as in test_browser.py: test-artifacts/screenshots/, or
docs/screenshots/ with UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.tests.factories import AccountFactory, UserFactory
from batches.tests.factories import BatchFactory
from batches.tests.test_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    PASSWORD,
    TIMEOUT,
    _allow_orm_beside_playwright,
    screenshots,
)
from jobs.models import JobStatus
from jobs.tests.factories import JobFactory

__all__ = ["_allow_orm_beside_playwright", "screenshots"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not __import__("os").path.exists(CHROMIUM), reason=f"{CHROMIUM} is missing"
    ),
]

OUTCOMES = ["answered", "answered", "voicemail", "no_answer", "busy", "answered"]


def campaign():
    """A campaign called over the last six hours, with some contacts left."""
    account = AccountFactory(name="Acme Insurance")
    batch = BatchFactory(account=account, name="Policy renewals")
    now = timezone.now()
    for i in range(60):
        start = now - timedelta(hours=6) + timedelta(minutes=6 * i)
        outcome = OUTCOMES[i % len(OUTCOMES)]
        seconds = 0.0 if outcome in ("busy", "no_answer") else 20.0 + (i * 7) % 160
        JobFactory(
            batch=batch,
            phone_number=f"+1415555{i:04d}",
            variables={"first_name": f"Ana {i}", "plan": "=gold"},
            status=JobStatus.COMPLETED
            if outcome in ("answered", "voicemail")
            else JobStatus.FAILED,
            attempts=1 + i % 3,
            attempt_log=[
                {
                    "outcome": outcome,
                    "started_at": start.isoformat(),
                    "ended_at": (start + timedelta(seconds=seconds)).isoformat(),
                    "duration_seconds": seconds,
                }
            ],
            result={"outcome": outcome},
            started_at=start,
            finished_at=start + timedelta(seconds=seconds),
        )
    for i in range(15):
        JobFactory(batch=batch, phone_number=f"+1415556{i:04d}")
    return batch


def test_batch_report_and_export_in_a_browser(live_server, screenshots):
    from playwright.sync_api import expect, sync_playwright

    batch = campaign()
    UserFactory(
        username="supervisor", password=PASSWORD, is_staff=True, is_superuser=True
    )
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.add_init_script(
            "localStorage.setItem('django.admin.navSidebarIsOpen', 'false')"
        )
        page.set_default_timeout(TIMEOUT * 1000)
        try:
            page.goto(f"{live_server.url}/admin/login/?next=/admin/")
            page.fill("#id_username", "supervisor")
            page.fill("#id_password", PASSWORD)
            page.click('input[type="submit"]')
            expect(page.locator("#user-tools")).to_contain_text("supervisor")

            page.goto(f"{live_server.url}/admin/batches/batch/{batch.pk}/change/")
            report = page.locator("#cc-report")
            expect(report).to_be_visible()
            for chart in ("outcomes", "calls", "attempts"):
                svg = page.locator(f".cc-chart-{chart} svg")
                expect(svg).to_be_visible()
                assert svg.locator("rect").count() > 0
                assert svg.bounding_box()["height"] > 50
            expect(page.locator("#cc-report-calls")).to_have_text("60")
            expect(page.locator("#cc-report-remaining")).to_have_text("15 of 75")
            expect(page.locator("#cc-report-waiting")).to_contain_text("pending")
            report.scroll_into_view_if_needed()
            report.screenshot(path=str(screenshots / "admin-batch-report.png"))

            # Export results from the list: the browser downloads the CSV.
            page.goto(f"{live_server.url}/admin/batches/batch/")
            page.check(f'input.action-select[value="{batch.pk}"]')
            page.select_option('select[name="action"]', "export_results")
            with page.expect_download() as download_info:
                page.click('button[name="index"]')
            download = download_info.value
            assert download.suggested_filename == f"{batch.batch_id}.csv"
            with open(download.path(), encoding="utf-8") as fh:
                rows = list(csv.DictReader(io.StringIO(fh.read())))
        finally:
            browser.close()

    assert len(rows) == 75
    assert {r["variables.plan"] for r in rows[:60]} == {"'=gold"}
    assert rows[0]["variables.first_name"] == "Ana 0"
