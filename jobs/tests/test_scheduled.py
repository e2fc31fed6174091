"""Scheduled jobs become claimable once their time has come.

Promotion compares ``scheduled_at`` with the database clock (``now()`` in
PostgreSQL), which time-machine cannot move: these tests move the job's time
instead, computed from the database's clock (so a session run with a faked
Python clock, TEST_CLOCK, does not change what they check). The worker's own
schedule (it promotes once a second) runs on ``time.monotonic``, which
time-machine does not move either: the worker test gives it a clock it
controls. How soon a job is claimed is a latency, measured
by the bench, not here.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection
from django.db.models.functions import Now

from jobs import worker as worker_module
from jobs.claim import claim_jobs, promote_due_jobs
from jobs.dialers.simulated import SimulatedDialer
from jobs.models import Job, JobStatus
from jobs.tests.factories import JobFactory
from jobs.worker import CallWorker


def db_now():
    """The database's clock: what promotion's ``now()`` (``Now()``) reads."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT now()")
            return cursor.fetchone()[0]
        # SQLite's own clock, UTC, as Django's Now() reads it there.
        cursor.execute("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")
        return datetime.fromisoformat(cursor.fetchone()[0]).replace(tzinfo=UTC)


def fast_worker():
    return CallWorker(
        dialer=SimulatedDialer(call_seconds=(0.01, 0.01), outcomes={"answered": 1.0}),
        worker_id="sched-worker",
        listen=False,
        poll_seconds=0.05,
        shutdown_timeout=2,
    )


@pytest.mark.django_db
def test_claim__a_job_scheduled_in_the_future_is_not_claimable():
    job = JobFactory(
        status=JobStatus.SCHEDULED, scheduled_at=db_now() + timedelta(hours=1)
    )
    assert promote_due_jobs() == 0
    assert claim_jobs(worker_id="w", limit=10) == []
    job.refresh_from_db()
    assert job.status == JobStatus.SCHEDULED


@pytest.mark.django_db
def test_promote_due_jobs__due_jobs_become_pending_whatever_their_time_zone():
    tokyo = ZoneInfo("Asia/Tokyo")
    due = JobFactory(
        status=JobStatus.SCHEDULED,
        scheduled_at=(db_now() - timedelta(seconds=1)).astimezone(tokyo),
    )
    later = JobFactory(
        status=JobStatus.SCHEDULED,
        scheduled_at=(db_now() + timedelta(minutes=5)).astimezone(tokyo),
    )
    assert promote_due_jobs() == 1
    due.refresh_from_db()
    later.refresh_from_db()
    assert due.status == JobStatus.PENDING
    assert later.status == JobStatus.SCHEDULED
    assert due.scheduled_at.tzinfo is not None
    assert [j.pk for j in claim_jobs(worker_id="w", limit=10)] == [due.pk]


@pytest.mark.django_db
def test_scheduled_at__python_clock_travel_does_not_make_a_job_due():
    # The database clock decides, so a process with a skewed clock (or a
    # test that travels) cannot promote a job early.
    job = JobFactory(
        status=JobStatus.SCHEDULED, scheduled_at=db_now() + timedelta(hours=1)
    )
    with time_machine.travel(db_now() + timedelta(hours=2)):
        assert promote_due_jobs() == 0
    job.refresh_from_db()
    assert job.status == JobStatus.SCHEDULED


class Clock:
    """The worker module's ``time``, with a ``monotonic`` the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0  # steps of 1/4 s add up exactly

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def __getattr__(self, name: str):
        return getattr(time, name)


def status(job) -> str:
    return Job.objects.values_list("status", flat=True).get(pk=job.pk)


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_worker__promotes_each_second_and_claims_a_due_job_in_that_round(
    monkeypatch,
):
    """The worker promotes due jobs at least once a second (the promise made
    to whoever schedules a call), and the round that promotes a job claims
    and dials it."""
    clock = Clock()
    monkeypatch.setattr(worker_module, "time", clock)
    worker = fast_worker()
    try:
        worker.tick()  # the worker's first round promotes: nothing is due
        job = JobFactory(
            status=JobStatus.SCHEDULED, scheduled_at=db_now() + timedelta(hours=1)
        )
        for _ in range(2):
            clock.advance(1.0)
            worker.tick()  # a round
            assert status(job) == JobStatus.SCHEDULED  # not before its time

        # Its time comes (the database clock decides).
        Job.objects.filter(pk=job.pk).update(
            scheduled_at=Now() - timedelta(milliseconds=1)
        )
        clock.advance(0.5)
        worker.tick()
        assert status(job) == JobStatus.SCHEDULED  # between two rounds
        clock.advance(0.5)  # a second after the last round
        worker.tick()
        job.refresh_from_db()
        # The round that promoted it also claimed and dialled it.
        assert job.status == JobStatus.IN_PROGRESS
        assert job.dialed_at is not None
        assert job.claimed_at >= job.scheduled_at

        for _ in range(10):  # the call's "placed" and "ended" messages
            if not worker.calls:
                break
            worker.drain_inbox(timeout=30)
            worker.tick()
        assert status(job) == JobStatus.COMPLETED
    finally:
        worker.shutdown()
