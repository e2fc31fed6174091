"""In Chromium: the dashboard's live rows (progress, rate, estimated end) and
pausing from a row: a confirmation first, then the pause's effect, which
follows the calls in progress as they finish.

Screenshots as in test_browser.py: test-artifacts/screenshots/, or
docs/screenshots/ with UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

import os
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
from jobs.models import Job, JobStatus
from jobs.tests.factories import JobFactory

__all__ = ["_allow_orm_beside_playwright", "screenshots"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is missing"),
]


def campaign(account, name: str, prefix: str):
    """Six calls ended in the last hour, two in progress, twelve waiting."""
    batch = BatchFactory(account=account, name=name)
    now = timezone.now()
    for i in range(6):
        JobFactory(
            batch=batch,
            phone_number=f"+1{prefix}000{i:04d}",
            status=JobStatus.COMPLETED,
            attempts=1,
            started_at=now - timedelta(minutes=10 * i + 2),
            finished_at=now - timedelta(minutes=10 * i + 1),
        )
    for i in range(2):
        JobFactory(
            batch=batch,
            phone_number=f"+1{prefix}100{i:04d}",
            status=JobStatus.IN_PROGRESS,
            claimed_by="worker-1",
            claimed_at=now,
            lease_expires_at=now + timedelta(minutes=5),
            started_at=now,
            attempts=1,
        )
    for i in range(12):
        JobFactory(batch=batch, phone_number=f"+1{prefix}200{i:04d}")
    return batch


def test_dashboard_in_a_browser__rate_eta_and_pause_from_a_row(
    live_server, screenshots
):
    from playwright.sync_api import expect, sync_playwright

    account = AccountFactory(name="Acme Insurance")
    renewals = campaign(account, "Policy renewals", "415")
    survey = campaign(account, "Satisfaction survey", "416")
    UserFactory(
        username="supervisor", password=PASSWORD, is_staff=True, is_superuser=True
    )
    questions: list[str] = []

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 800})
        page.add_init_script(
            "localStorage.setItem('django.admin.navSidebarIsOpen', 'false')"
        )
        page.set_default_timeout(TIMEOUT * 1000)
        try:
            page.goto(f"{live_server.url}/admin/login/?next=/dashboard/")
            page.fill("#id_username", "supervisor")
            page.fill("#id_password", PASSWORD)
            page.click('input[type="submit"]')

            row = page.locator(f'tr[data-batch-id="{renewals.batch_id}"]')
            other = page.locator(f'tr[data-batch-id="{survey.batch_id}"]')
            expect(row.locator(".cc-rate")).to_have_text("6/h")
            # 14 left at 6 an hour: a date, not a reason for having none.
            expect(row.locator(".cc-eta")).not_to_contain_text("(")
            expect(row.locator(".cc-finished")).to_have_text("6 / 20")

            # Dismissing the confirmation changes nothing.
            page.once("dialog", lambda d: (questions.append(d.message), d.dismiss()))
            other.locator("button.cc-pause").click()
            assert "No new call will start" in questions[-1]
            expect(other.locator(".cc-badge")).to_have_text("active")

            # Accepting it pauses, and the row says what that means now.
            page.once("dialog", lambda d: (questions.append(d.message), d.accept()))
            row.locator("button.cc-pause").click()
            assert "Policy renewals" in questions[-1]
            expect(page.locator("#cc-flash")).to_contain_text(
                "no new calls; 2 calls in progress finishing"
            )
            expect(row.locator(".cc-badge")).to_have_text("paused")
            expect(row.locator(".cc-effect")).to_have_text("no new calls · 2 finishing")
            expect(row.locator(".cc-eta")).to_have_text("- (paused)")
            page.screenshot(path=str(screenshots / "dashboard-pause.png"))

            # The two calls end, as a worker records them; the next poll shows it.
            Job.objects.filter(batch=renewals, status=JobStatus.IN_PROGRESS).update(
                status=JobStatus.COMPLETED, finished_at=timezone.now()
            )
            expect(row.locator(".cc-effect")).to_have_text(
                "no new calls · none in progress"
            )
            expect(row.locator(".cc-finished")).to_have_text("8 / 20")
        finally:
            browser.close()

    renewals.refresh_from_db()
    survey.refresh_from_db()
    assert (renewals.is_active, survey.is_active) == (False, True)
    assert renewals.events.get(action="paused").actor_label == "supervisor"
    assert Job.objects.filter(batch=renewals, status=JobStatus.PENDING).count() == 12


def test_dashboard_in_a_browser__in_spanish_then_english_from_the_selector(
    live_server, screenshots
):
    from playwright.sync_api import expect, sync_playwright

    account = AccountFactory(name="Seguros Acme")
    batch = campaign(account, "Renovaciones de pólizas", "417")
    UserFactory(
        username="supervisora", password=PASSWORD, is_staff=True, is_superuser=True
    )
    questions: list[str] = []

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        # The browser asks for Spanish (Accept-Language: es-ES).
        page = browser.new_page(viewport={"width": 1440, "height": 800}, locale="es-ES")
        page.add_init_script(
            "localStorage.setItem('django.admin.navSidebarIsOpen', 'false')"
        )
        page.set_default_timeout(TIMEOUT * 1000)
        try:
            page.goto(f"{live_server.url}/admin/login/?next=/dashboard/")
            page.fill("#id_username", "supervisora")
            page.fill("#id_password", PASSWORD)
            page.click('input[type="submit"]')

            expect(page.locator("h2").nth(1)).to_have_text(
                "Campañas activas y pausadas"
            )
            row = page.locator(f'tr[data-batch-id="{batch.batch_id}"]')
            expect(row.locator(".cc-badge")).to_have_text("activa")
            page.once("dialog", lambda d: (questions.append(d.message), d.accept()))
            row.locator("button.cc-pause").click()
            expect(row.locator(".cc-effect")).to_have_text(
                "sin llamadas nuevas · 2 terminando"
            )
            assert questions[-1].startswith("¿Pausar «Renovaciones de pólizas»?")
            expect(page.locator("#cc-flash")).to_contain_text(
                "Pausada: no hay llamadas nuevas; 2 llamadas en curso terminando."
            )
            page.screenshot(path=str(screenshots / "dashboard-es.png"))

            # The admin's language selector overrides the browser's language.
            page.select_option("#cc-language-select", "en")
            page.click("#cc-language button")
            expect(page.locator("h2").nth(1)).to_have_text("Active and paused batches")
            expect(row.locator(".cc-effect")).to_have_text("no new calls · 2 finishing")
        finally:
            browser.close()
