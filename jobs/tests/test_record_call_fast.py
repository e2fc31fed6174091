from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs import lifecycle
from jobs.claim import claim_jobs
from jobs.dialers.base import CallResult, Outcome
from jobs.models import Job, JobStatus
from jobs.signals import jobs_finished
from jobs.tests.factories import JobFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _dialled(worker_id: str) -> Job:
    (job,) = claim_jobs(worker_id=worker_id, limit=1)
    (job,) = lifecycle.mark_dialed(jobs=[job], worker_id=worker_id)
    return job


def _record(job: Job, worker_id: str, outcome: str = Outcome.ANSWERED) -> str:
    assert job.dialed_at is not None
    return lifecycle.record_call(
        job_id=job.pk,
        worker_id=worker_id,
        dialed_at=job.dialed_at,
        call_id="call-1",
        result=CallResult(outcome=outcome, duration_seconds=1.25),
    )


def test_record_call__success_completes_with_the_full_attempt_entry():
    JobFactory()
    seen = []

    def on_finished(sender, finished, **kwargs):
        seen.extend((job.pk, job.status, outcome) for job, outcome in finished)

    jobs_finished.connect(on_finished)
    try:
        job = _dialled("w-1")
        status = _record(job, "w-1")
    finally:
        jobs_finished.disconnect(on_finished)

    job.refresh_from_db()
    assert status == job.status == JobStatus.COMPLETED
    assert job.lease_expires_at is None
    assert job.finished_at is not None
    assert job.call_id == "call-1"
    assert job.result == {
        "outcome": "answered",
        "duration_seconds": 1.25,
        "call_id": "call-1",
        "attempt": 1,
    }
    (entry,) = job.attempt_log
    assert entry["attempt"] == 1
    assert entry["worker"] == "w-1"
    assert entry["outcome"] == "answered"
    assert entry["dialed_at"] == entry["started_at"]
    assert set(entry) == {
        "attempt", "outcome", "started_at", "ended_at", "duration_seconds",
        "worker", "call_id", "error", "hung_up", "dialed_at",
    }  # fmt: skip
    assert seen == [(job.pk, JobStatus.COMPLETED, "answered")]


def test_record_call__success_twice_is_recorded_once():
    JobFactory()
    job = _dialled("w-1")

    _record(job, "w-1")
    _record(job, "w-1")

    job.refresh_from_db()
    assert len(job.attempt_log) == 1


def test_record_call__success_for_a_cancelled_job_keeps_it_cancelled():
    JobFactory()
    job = _dialled("w-1")
    Job.objects.filter(pk=job.pk).update(status=JobStatus.CANCELLED)

    status = _record(job, "w-1")

    job.refresh_from_db()
    assert status == job.status == JobStatus.CANCELLED
    assert job.result["outcome"] == "answered"
    assert len(job.attempt_log) == 1


def test_record_call__busy_still_schedules_a_retry():
    JobFactory(max_attempts=3)
    job = _dialled("w-1")

    status = _record(job, "w-1", outcome=Outcome.BUSY)

    job.refresh_from_db()
    assert status == job.status == JobStatus.SCHEDULED
    assert job.scheduled_at > timezone.now() - timedelta(seconds=1)
