"""Acceptance: real ``run_call_worker`` subprocesses spend a small balance."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.db import connection

from accounts.credits import credits_add
from accounts.models import Account, CreditEntry
from accounts.tests.factories import AccountFactory
from batches.models import Batch
from batches.tests.factories import BatchFactory
from callcenter.actor import Actor
from jobs.models import Job, JobStatus
from jobs.tests.factories import JobFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def run_workers(n: int, tmp_path, round_: int) -> None:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    url = f"postgres://{auth}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DJANGO_SETTINGS_MODULE": "callcenter.settings_test",
        "SIMULATED_OUTCOMES": "answered=1",
        "SIMULATED_CALL_SECONDS": "0.02-0.1",
        "CALL_COST_PER_CALL": "1",
        "CALL_COST_PER_STARTED_MINUTE": "1",
        "CALL_RESERVE_MINUTES": "1",
        "PYTHONUNBUFFERED": "1",
    }
    procs = []
    for i in range(n):
        log = tmp_path / f"round{round_}-worker{i}.log"
        procs.append(
            (
                subprocess.Popen(
                    [
                        sys.executable,
                        "manage.py",
                        "run_call_worker",
                        "--burst",
                        "--concurrency",
                        "3",
                        "--worker-id",
                        f"r{round_}w{i}",
                    ],
                    cwd=settings.BASE_DIR,
                    env=env,
                    stdout=log.open("w"),
                    stderr=subprocess.STDOUT,
                ),
                log,
            )
        )
    for proc, log in procs:
        try:
            code = proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError(log.read_text()) from None
        assert code == 0, log.read_text()


def test_worker_processes__never_overspend_suspend_and_resume_on_top_up(
    tmp_path, settings
):
    settings.CALL_COST_PER_CALL = 1
    settings.CALL_COST_PER_STARTED_MINUTE = 1
    settings.CALL_RESERVE_MINUTES = 1
    account = AccountFactory(credits=9)  # four calls at 2 credits each
    batches = [BatchFactory(account=account) for _ in range(3)]
    for batch in batches:
        JobFactory.create_batch(10, batch=batch)

    run_workers(3, tmp_path, 1)

    account.refresh_from_db()
    completed = Job.objects.filter(status=JobStatus.COMPLETED).count()
    # At most four calls fit, each paid for; fewer when the pause for credits
    # commits between a job's reservation and its dial mark (the pause is
    # exact: that job is released to its paused batch and refunded).
    assert 1 <= completed <= 4
    assert account.credits == 9 - 2 * completed
    waiting = Job.objects.filter(status=JobStatus.SUSPENDED).count() + (
        Job.objects.filter(status=JobStatus.PENDING, batch__is_active=False).count()
    )
    assert waiting == 30 - completed
    assert min(CreditEntry.objects.values_list("balance_after", flat=True)) >= 0
    assert all(
        (b.is_active, b.pause_source, b.pause_reason) == (False, "system", "no credits")
        for b in Batch.objects.filter(account=account)
    )

    credits_add(account=account, amount=100, actor=Actor.system("tests"))
    run_workers(3, tmp_path, 2)

    assert Job.objects.filter(status=JobStatus.COMPLETED).count() == 30
    assert Account.objects.get(pk=account.pk).credits == 9 + 100 - 30 * 2
    assert all(
        b.state == Batch.State.COMPLETED for b in Batch.objects.filter(account=account)
    )
