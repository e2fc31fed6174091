from __future__ import annotations

import pytest

from batches import services as batch_services
from batches.models import BatchEvent
from batches.tests.factories import BatchFactory
from jobs import services
from jobs.models import JobEvent, JobStatus
from jobs.tests.factories import JobFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("status", ["pending", "in_progress", "suspended"])
def test_job_cancel__cancels_open_job_with_reason_and_audit(api_actor, status):
    job = JobFactory(status=status)
    services.job_cancel(job=job, actor=api_actor, reason="customer asked")
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert job.cancel_reason == "customer asked"
    assert job.finished_at is not None
    event = JobEvent.objects.get(job=job)
    assert event.action == "cancelled"
    assert event.actor == api_actor.user
    assert event.changes == {"status": [status, "cancelled"]}


@pytest.mark.parametrize("status", ["completed", "done", "failed", "cancelled"])
def test_job_cancel__refuses_terminal_job(api_actor, status):
    job = JobFactory(status=status)
    with pytest.raises(services.JobNotCancellableError):
        services.job_cancel(job=job, actor=api_actor)
    job.refresh_from_db()
    assert job.status == status


def test_job_requeue__failed_job_gets_a_fresh_budget(api_actor):
    job = JobFactory(status=JobStatus.FAILED, attempts=3, max_attempts=3)
    services.job_requeue(job=job, actor=api_actor)
    job.refresh_from_db()
    assert job.status == JobStatus.PENDING
    assert job.max_attempts == 6
    assert JobEvent.objects.filter(job=job, action="requeued").exists()


def test_job_requeue__reopens_a_completed_batch(api_actor):
    from django.utils import timezone

    batch = BatchFactory(completed_at=timezone.now())
    job = JobFactory(batch=batch, status=JobStatus.FAILED)
    services.job_requeue(job=job, actor=api_actor)
    batch.refresh_from_db()
    assert batch.completed_at is None
    # Audited, with who requeued the job as the actor.
    event = BatchEvent.objects.get(batch=batch, action="reopened")
    assert event.actor == api_actor.user
    assert event.reason == "a job was requeued"


def test_job_requeue__a_batch_not_completed_records_no_reopening(api_actor):
    batch = BatchFactory()
    job = JobFactory(batch=batch, status=JobStatus.FAILED)
    services.job_requeue(job=job, actor=api_actor)
    assert not BatchEvent.objects.filter(batch=batch, action="reopened").exists()


def test_job_requeue__refuses_pending_and_cancelled_batch_jobs(api_actor):
    with pytest.raises(services.JobNotRequeueableError):
        services.job_requeue(job=JobFactory(status=JobStatus.PENDING), actor=api_actor)
    batch = BatchFactory()
    job = JobFactory(batch=batch, status=JobStatus.FAILED)
    batch_services.batch_cancel(batch=batch, actor=api_actor)
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    with pytest.raises(services.JobNotRequeueableError, match="cancelled batch"):
        services.job_requeue(job=job, actor=api_actor)


def test_job_requeue__refuses_job_of_deleted_batch(api_actor):
    batch = BatchFactory()
    job = JobFactory(batch=batch, status=JobStatus.FAILED)
    batch_services.batch_delete(batch=batch, actor=api_actor)
    with pytest.raises(services.JobNotRequeueableError, match="deleted batch"):
        services.job_requeue(job=job, actor=api_actor)
