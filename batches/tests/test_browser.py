"""End to end, in a real browser: a staff member pauses, resumes and cancels
batches in admin while a real ``run_call_worker`` subprocess drains them, then
watches the dashboard move.

Playwright drives Debian's Chromium (``make test`` installs it when missing).
Screenshots land in test-artifacts/screenshots/; with UPDATE_SCREENSHOTS=1
they replace the documentation's images in docs/screenshots/ ($SCREENSHOTS_DIR
overrides both).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection, connections

from accounts.tests.factories import AccountFactory, UserFactory
from batches import services
from batches.models import Batch
from jobs.models import Job, JobStatus

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "pw-for-browser-tests-1"
WORKER_ID = "browser-test-worker"
TIMEOUT = 60.0

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM),
        reason=f"{CHROMIUM} is missing: `make browser` (as root) installs it",
    ),
]


@pytest.fixture(autouse=True)
def _allow_orm_beside_playwright(monkeypatch):
    # Playwright's sync API runs an event loop in this thread; Django would
    # otherwise refuse the test's own ORM calls made between browser steps.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture
def screenshots() -> Path:
    # A plain `make test` must not dirty the working tree, so the committed
    # documentation images are only rewritten on request (UPDATE_SCREENSHOTS=1).
    base = Path(settings.BASE_DIR)
    if os.environ.get("UPDATE_SCREENSHOTS"):
        default = base / "docs" / "screenshots"
    else:
        default = base / "test-artifacts" / "screenshots"
    path = Path(os.environ.get("SCREENSHOTS_DIR") or default)
    path.mkdir(parents=True, exist_ok=True)
    return path


def worker_database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] or ""
    if db.get("PASSWORD"):
        auth += f":{db['PASSWORD']}"
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{auth}@{host}:{port}/{db['NAME']}"


@pytest.fixture
def start_worker(tmp_path) -> Iterator[Callable[[], subprocess.Popen]]:
    procs: list[tuple[subprocess.Popen, Path]] = []

    def start() -> subprocess.Popen:
        log = tmp_path / f"worker-{len(procs)}.log"
        env = {
            **os.environ,
            "DATABASE_URL": worker_database_url(),
            "DJANGO_SETTINGS_MODULE": "callcenter.settings_test",
            "SIMULATED_CALL_SECONDS": "0.2",
            "SIMULATED_SEED": "1",
            "SIMULATED_OUTCOMES": "answered=1",
            "WORKER_POLL_SECONDS": "0.2",
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "manage.py",
                    "run_call_worker",
                    "--concurrency",
                    "2",
                    "--worker-id",
                    WORKER_ID,
                    "--shutdown-timeout",
                    "10",
                ],
                cwd=settings.BASE_DIR,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        procs.append((proc, log))
        return proc

    yield start

    for proc, log in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        tail = log.read_text(errors="replace").splitlines()[-40:]
        print(f"--- {log.name} (exit {proc.returncode}) ---", *tail, sep="\n")
    # PostgreSQL ends a backend a moment after its client leaves; the test
    # database can only be dropped once the worker's sessions are gone.
    wait_for("the worker's database sessions to end", other_sessions_gone, 15)


def other_sessions_gone() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0] == 0


def wait_for(what: str, predicate: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    """Poll the database until ``predicate`` holds; fail after the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


def finished(batch: Batch) -> int:
    return Job.objects.filter(batch=batch, status=JobStatus.COMPLETED).count()


def make_batch(account, actor, name: str, *, priority: int, jobs: int, prefix: str):
    batch = services.batch_create(
        account=account, name=name, priority=priority, actor=actor
    )
    Job.objects.bulk_create(
        Job(
            account=account,
            batch=batch,
            phone_number=f"+1415{prefix}{i:04d}",
            variables={"first_name": "Ana"},
        )
        for i in range(jobs)
    )
    return batch


def run_action(page, live_server, batch: Batch, action: str) -> None:
    page.goto(f"{live_server.url}/admin/batches/batch/")
    page.check(f'input.action-select[value="{batch.pk}"]')
    page.select_option('select[name="action"]', action)
    page.click('button[name="index"]')


def test_admin_in_a_browser__pause_resume_cancel_and_dashboard(
    live_server, start_worker, screenshots, system_actor
):
    from playwright.sync_api import expect, sync_playwright

    account = AccountFactory(name="Acme Insurance", credits=1_000_000)
    UserFactory(
        username="supervisor", password=PASSWORD, is_staff=True, is_superuser=True
    )
    renewals = make_batch(
        account, system_actor, "Policy renewals", priority=5, jobs=100, prefix="555"
    )
    survey = make_batch(
        account, system_actor, "Satisfaction survey", priority=1, jobs=150, prefix="556"
    )
    winback = make_batch(
        account, system_actor, "Win-back offers", priority=0, jobs=20, prefix="557"
    )
    services.batch_pause(batch=winback, actor=system_actor, reason="script review")

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        # Screenshots read better without the admin's app sidebar.
        page.add_init_script(
            "localStorage.setItem('django.admin.navSidebarIsOpen', 'false')"
        )
        page.set_default_timeout(TIMEOUT * 1000)
        try:
            # Log in as staff.
            page.goto(f"{live_server.url}/admin/login/?next=/admin/")
            page.fill("#id_username", "supervisor")
            page.fill("#id_password", PASSWORD)
            page.click('input[type="submit"]')
            expect(page.locator("#user-tools")).to_contain_text("supervisor")

            # A real worker drains the highest-priority batch first.
            worker = start_worker()
            wait_for(
                "the worker to finish 3 renewals calls", lambda: finished(renewals) >= 3
            )

            # Pause it from the list while it is being drained.
            run_action(page, live_server, renewals, "pause_selected")
            expect(page.locator("ul.messagelist li.success")).to_have_text(
                "1 batch paused"
            )
            renewals.refresh_from_db()
            assert renewals.state == Batch.State.PAUSED
            taken = set(
                Job.objects.filter(batch=renewals)
                .exclude(status=JobStatus.PENDING)
                .values_list("id", flat=True)
            )
            assert len(taken) < 100, "the batch drained before the pause landed"
            page.screenshot(path=str(screenshots / "admin-batch-list.png"))

            # The worker takes no more of its jobs, while the survey keeps flowing.
            survey_before = finished(survey)
            wait_for(
                "the survey to keep flowing",
                lambda: finished(survey) >= survey_before + 5,
            )
            after = set(
                Job.objects.filter(batch=renewals)
                .exclude(status=JobStatus.PENDING)
                .values_list("id", flat=True)
            )
            assert after == taken
            assert not Job.objects.filter(
                batch=renewals, claimed_at__gt=renewals.paused_at
            ).exists()

            # Resume it, and it drains.
            run_action(page, live_server, renewals, "resume_selected")
            expect(page.locator("ul.messagelist li.success")).to_have_text(
                "1 batch resumed"
            )
            wait_for("the renewals to drain", lambda: finished(renewals) == 100)

            # Its page: POST-only object tools, counts and the audit trail.
            page.goto(f"{live_server.url}/admin/batches/batch/{renewals.pk}/change/")
            expect(page.locator("#cc-pause")).to_be_visible()
            trail = page.locator("#events-group")
            expect(trail).to_contain_text("Resumed")
            expect(trail).to_contain_text("Paused")
            expect(trail).to_contain_text("supervisor")
            page.screenshot(
                path=str(screenshots / "admin-batch-page.png"), full_page=True
            )

            # Cancel the paused win-back campaign through the confirmation page.
            run_action(page, live_server, winback, "cancel_selected")
            expect(page.locator("h1")).to_have_text("Cancel batches: are you sure?")
            expect(page.locator("table.cc-confirm")).to_contain_text("Win-back offers")
            expect(page.locator("td.cc-to-cancel")).to_have_text("20")
            page.screenshot(path=str(screenshots / "admin-cancel-confirmation.png"))
            page.click('#cc-cancel-form input[type="submit"]')
            expect(page.locator("ul.messagelist li.success")).to_have_text(
                "1 batch cancelled; 20 jobs cancelled"
            )
            assert (
                Job.objects.filter(batch=winback, status=JobStatus.CANCELLED).count()
                == 20
            )

            # The dashboard's numbers move on their own while the survey runs.
            page.goto(f"{live_server.url}/dashboard/")
            calls = page.locator("#cc-calls-last-hour")
            expect(calls).not_to_have_text("")
            first = int(calls.inner_text())
            survey_row = page.locator(f'tr[data-batch-id="{survey.batch_id}"]')
            expect(survey_row).to_contain_text("Satisfaction survey")
            first_progress = survey_row.locator(".cc-finished").inner_text()
            page.wait_for_function(
                "n => Number(document.getElementById('cc-calls-last-hour')"
                ".textContent) > n",
                arg=first,
                timeout=TIMEOUT * 1000,
            )
            expect(survey_row.locator(".cc-finished")).not_to_have_text(first_progress)
            expect(page.locator("#cc-workers")).to_contain_text(WORKER_ID)
            assert first >= 100
            page.screenshot(path=str(screenshots / "dashboard.png"), full_page=True)
        finally:
            browser.close()
            # Inside the Playwright block Django's connection lives in another
            # context (Playwright runs an event loop here); close it in that
            # same context, or it outlives the test and blocks the DB drop.
            connections.close_all()

    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
