"""Scheduled jobs become claimable within a second of their time.

Promotion compares ``scheduled_at`` with the database clock (``now()`` in
PostgreSQL), which time-machine cannot move; so these tests schedule a job a
fraction of a second ahead on the real clock and drive the worker's units in
a loop with a deadline. Nothing sleeps before an assertion: the loop stops as
soon as the job is claimed.
"""

from __future__ import annotations

import time
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from jobs.claim import claim_jobs, promote_due_jobs
from jobs.dialers.simulated import SimulatedDialer
from jobs.models import Job, JobStatus
from jobs.tests.factories import JobFactory
from jobs.worker import CallWorker


def db_now():
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        return cursor.fetchone()[0]


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
        status=JobStatus.SCHEDULED, scheduled_at=timezone.now() + timedelta(hours=1)
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
        scheduled_at=(timezone.now() - timedelta(seconds=1)).astimezone(tokyo),
    )
    later = JobFactory(
        status=JobStatus.SCHEDULED,
        scheduled_at=(timezone.now() + timedelta(minutes=5)).astimezone(tokyo),
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
        status=JobStatus.SCHEDULED, scheduled_at=timezone.now() + timedelta(hours=1)
    )
    with time_machine.travel(timezone.now() + timedelta(hours=2)):
        assert promote_due_jobs() == 0
    job.refresh_from_db()
    assert job.status == JobStatus.SCHEDULED


@pytest.mark.django_db(transaction=True)
def test_worker__claims_a_scheduled_job_within_a_second_of_its_time():
    worker = fast_worker()
    try:
        worker.tick()  # the worker is running: its promotion clock has started
        scheduled_at = db_now() + timedelta(milliseconds=500)
        job = JobFactory(status=JobStatus.SCHEDULED, scheduled_at=scheduled_at)

        worker.tick()
        job.refresh_from_db()
        assert job.status == JobStatus.SCHEDULED  # not before its time

        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            worker.tick()
            job.refresh_from_db()
            if job.claimed_at is not None or job.status == JobStatus.COMPLETED:
                break
            worker.sleep(0.01)

        assert job.claimed_at is not None, f"still {job.status} after 5s"
        latency = job.claimed_at - scheduled_at
        assert timedelta(0) <= latency < timedelta(seconds=1), latency

        while time.monotonic() < deadline and worker.calls:
            worker.tick()
            worker.sleep(0.01)
        assert Job.objects.get(pk=job.pk).status == JobStatus.COMPLETED
    finally:
        worker.shutdown()
