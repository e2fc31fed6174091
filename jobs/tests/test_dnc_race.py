"""A DNC entry committed before the dial gate's transaction means no dial:
a real worker process dials while the test commits entries one by one."""

from __future__ import annotations

import pytest
from django.db import connection

from batches.tests.factories import BatchFactory
from callcenter.actor import Actor
from jobs import dnc
from jobs.models import CallAttempt, Job, JobStatus
from jobs.tests.factories import JobFactory
from jobs.tests.test_worker_process import (  # noqa: F401 (fixture)
    start_worker,
    wait_until,
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
    pytest.mark.postgres_only,
]

NUMBERS = [f"+1415555{n:04d}" for n in range(100, 140)]


def clock() -> object:
    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        return cursor.fetchone()[0]


def test_dnc_entries_committed_mid_run_stop_every_later_dial(
    account,
    rng,
    start_worker,  # noqa: F811
):
    account.credits = 100_000
    account.save(update_fields=["credits"])
    for _ in range(3):
        batch = BatchFactory(account=account)
        for number in NUMBERS:
            JobFactory(batch=batch, phone_number=number)
    order = list(NUMBERS)
    rng.shuffle(order)

    worker = start_worker(
        "--burst",
        "--concurrency=4",
        "--worker-id=w-race",
        SIMULATED_CALL_SECONDS="0.01",
    )
    # Entries land while the worker is dialling.
    wait_until(CallAttempt.objects.exists, worker, "the first dial")
    committed = {}
    for number in order:
        dnc.dnc_add(account=account, numbers=[number], actor=Actor.system("race"))
        committed[number] = clock()  # the entry's commit is before this
    assert worker.wait() == 0, worker.output

    # Every dial of a listed number started (the gate's transaction began)
    # before its entry committed; none after.
    late = [
        (a.phone_number, a.started_at, committed[a.phone_number])
        for a in CallAttempt.objects.all()
        if a.started_at > committed[a.phone_number]
    ]
    assert late == []
    jobs = Job.objects.filter(account=account)
    assert not jobs.exclude(
        status__in=[JobStatus.COMPLETED, JobStatus.CANCELLED]
    ).exists()
    stopped = jobs.filter(status=JobStatus.CANCELLED)
    assert set(stopped.values_list("stop_code", flat=True)) <= {"dnc"}
    # The run overlapped the entries: some jobs were dialled, some stopped.
    assert CallAttempt.objects.filter(job__account=account).exists()
    assert stopped.exists(), "no entry landed before the worker drained the jobs"
