"""In Chromium: cancelling a batch above SWEEP_INLINE_MAX_JOBS leads the staff
member to the operation's page, whose progress bar moves as the background
sweep commits its chunks, and ends full with the operation succeeded.

Screenshots as in test_browser.py: test-artifacts/screenshots/, or
docs/screenshots/ with UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.test import override_settings

from accounts.tests.factories import UserFactory
from batches import operations
from batches.models import Operation
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
    pytest.mark.skipif(
        not __import__("os").path.exists(CHROMIUM), reason=f"{CHROMIUM} is missing"
    ),
]


@override_settings(SWEEP_INLINE_MAX_JOBS=10, JOB_SWEEP_CHUNK_SIZE=5)
def test_cancel_a_big_batch_and_watch_the_progress_bar(
    live_server, screenshots, monkeypatch
):
    from playwright.sync_api import expect, sync_playwright

    batch = BatchFactory(name="Spring promotion")
    JobFactory.create_batch(30, batch=batch)
    UserFactory(
        username="supervisor", password=PASSWORD, is_staff=True, is_superuser=True
    )
    # The qcluster's part is played by a thread below, so that the test can
    # hold the sweep between two chunks while the page polls.
    queued: list[int] = []
    monkeypatch.setattr(operations, "enqueue", queued.append)
    halfway = threading.Event()
    go_on = threading.Event()
    errors: list[BaseException] = []

    def hold_at_ten(op: Operation) -> None:
        if op.done == 10:
            halfway.set()
            assert go_on.wait(TIMEOUT)

    def sweep() -> None:
        try:
            operations.operation_run(queued[0], after_chunk=hold_at_ten)
        except BaseException as exc:  # reported below
            errors.append(exc)
            halfway.set()
        finally:
            connection.close()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.add_init_script(
            "localStorage.setItem('django.admin.navSidebarIsOpen', 'false')"
        )
        page.set_default_timeout(TIMEOUT * 1000)
        runner = threading.Thread(target=sweep)
        try:
            page.goto(f"{live_server.url}/admin/login/?next=/admin/")
            page.fill("#id_username", "supervisor")
            page.fill("#id_password", PASSWORD)
            page.click('input[type="submit"]')
            expect(page.locator("#user-tools")).to_contain_text("supervisor")

            page.goto(f"{live_server.url}/admin/batches/batch/{batch.pk}/change/")
            page.click("#cc-cancel")
            page.click('#cc-cancel-form input[type="submit"]')

            # The batch is cancelled at once; the page is the operation's.
            bar = page.locator("#cc-operation-bar")
            expect(bar).to_be_visible()
            expect(page.locator("#cc-operation-total")).to_have_text("30")
            expect(page.locator("#cc-operation-done")).to_have_text("0")
            assert bar.get_attribute("value") == "0"
            assert len(queued) == 1

            runner.start()
            assert halfway.wait(TIMEOUT)
            assert not errors, errors
            # Two chunks of five are committed: the bar moved by itself.
            expect(page.locator("#cc-operation-done")).to_have_text("10")
            expect(page.locator("#cc-operation-percent")).to_have_text("33")
            expect(page.locator("#cc-operation-cancelled")).to_have_text("10")
            expect(page.locator("#cc-operation-state")).to_have_attribute(
                "data-state", "running"
            )
            assert page.evaluate(
                "document.getElementById('cc-operation-bar').value"
            ) == 33
            page.screenshot(path=str(screenshots / "admin-operation-progress.png"))

            go_on.set()
            expect(page.locator("#cc-operation-state")).to_have_attribute(
                "data-state", "succeeded"
            )
            expect(page.locator("#cc-operation-percent")).to_have_text("100")
            expect(page.locator("#cc-operation-cancelled")).to_have_text("30")
            assert page.evaluate(
                "document.getElementById('cc-operation-bar').value"
            ) == 100
        finally:
            go_on.set()
            if runner.is_alive() or runner.ident is not None:
                runner.join(TIMEOUT)
            browser.close()

    assert not errors, errors
    assert Job.objects.filter(batch=batch, status=JobStatus.CANCELLED).count() == 30
