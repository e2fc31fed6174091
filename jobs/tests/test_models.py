from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from batches.selectors import batch_stats, batch_status_counts
from batches.tests.factories import BatchFactory
from jobs.models import Job, JobStatus, normalize_status
from jobs.tests.factories import JobFactory

pytestmark = pytest.mark.django_db


def test_job_status__has_all_eight_original_values():
    assert set(JobStatus.values) == {
        "pending",
        "scheduled",
        "in_progress",
        "completed",
        "done",
        "failed",
        "suspended",
        "cancelled",
    }


def test_done_alias__counts_as_completed_everywhere():
    batch = BatchFactory()
    JobFactory(batch=batch, status=JobStatus.DONE)
    JobFactory(batch=batch, status=JobStatus.COMPLETED)
    JobFactory(batch=batch, status=JobStatus.PENDING)
    assert normalize_status("done") == "completed"
    assert Job.objects.completed().count() == 2
    assert Job.objects.with_status("done").count() == 2
    assert Job.objects.with_status("completed").count() == 2
    assert Job.objects.terminal().count() == 2
    done_job = Job.objects.get(status=JobStatus.DONE)
    assert done_job.is_completed
    assert done_job.is_terminal
    counts = batch_status_counts([batch.pk])[batch.pk]
    assert counts["completed"] == 2
    assert "done" not in counts
    stats = batch_stats(batch=batch)
    assert stats["finished"] == 2
    assert stats["total"] == 3


def test_job_phone__validated_as_e164_by_model_and_database():
    batch = BatchFactory()
    job = Job(account=batch.account, batch=batch, phone_number="555-1234")
    with pytest.raises(ValidationError):
        job.full_clean()
    with pytest.raises(IntegrityError), transaction.atomic():
        job.save()


def test_job__same_number_twice_in_a_batch_is_refused_by_database():
    batch = BatchFactory()
    JobFactory(batch=batch, phone_number="+14155550100")
    with pytest.raises(IntegrityError), transaction.atomic():
        JobFactory(batch=batch, phone_number="+14155550100")
    # The same number in another batch, or with no batch, is fine.
    JobFactory(phone_number="+14155550100")
    JobFactory(batch=None, account=batch.account, phone_number="+14155550100")


def test_job__scheduled_needs_a_time():
    batch = BatchFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        JobFactory(batch=batch, status=JobStatus.SCHEDULED, scheduled_at=None)
    JobFactory(batch=batch, status=JobStatus.SCHEDULED, scheduled_at=timezone.now())


def test_job__unknown_status_is_refused_by_database():
    with pytest.raises(IntegrityError), transaction.atomic():
        JobFactory(status="running")


def test_batch__cancelled_batch_cannot_be_active_in_database():
    with pytest.raises(IntegrityError), transaction.atomic():
        BatchFactory(is_active=True, cancelled_at=timezone.now())


def test_account__credits_cannot_go_negative_in_database(account):
    from accounts.models import Account

    with pytest.raises(IntegrityError), transaction.atomic():
        Account.objects.filter(pk=account.pk).update(credits=-1)
