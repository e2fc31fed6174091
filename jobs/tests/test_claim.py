from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from batches.services import batch_cancel, batch_delete, batch_pause
from batches.tests.factories import BatchFactory
from jobs.claim import claim_jobs, promote_due_jobs
from jobs.models import Job, JobStatus
from jobs.tests.factories import JobFactory

pytestmark = pytest.mark.django_db


def claim_one_by_one(n: int) -> list[int]:
    order = []
    for _ in range(n):
        jobs = claim_jobs(worker_id="w1", limit=1)
        if not jobs:
            break
        order.append(jobs[0].pk)
    return order


def test_claim_jobs__orders_by_batch_priority_then_job_priority_then_age(account):
    low = BatchFactory(account=account, priority=1)
    high = BatchFactory(account=account, priority=9)
    low_old = JobFactory(batch=low, priority=5)
    high_old = JobFactory(batch=high, priority=0)
    high_new_urgent = JobFactory(batch=high, priority=3)
    high_new = JobFactory(batch=high, priority=0)
    low_new = JobFactory(batch=low, priority=5)

    order = claim_one_by_one(10)

    assert order == [
        high_new_urgent.pk,
        high_old.pk,
        high_new.pk,
        low_old.pk,
        low_new.pk,
    ]


def test_claim_jobs__takes_jobs_without_batch_first(account):
    batch = BatchFactory(account=account, priority=100)
    in_batch = JobFactory(batch=batch)
    one_off_low = JobFactory(batch=None, account=account, priority=0)
    one_off_high = JobFactory(batch=None, account=account, priority=2)

    assert claim_one_by_one(5) == [one_off_high.pk, one_off_low.pk, in_batch.pk]


def test_claim_jobs__skips_batches_that_are_not_active(account, system_actor):
    active = BatchFactory(account=account)
    paused = BatchFactory(account=account, priority=5)
    cancelled = BatchFactory(account=account, priority=5)
    deleted = BatchFactory(account=account, priority=5)
    completed = BatchFactory(account=account, priority=5, completed_at=timezone.now())
    claimable = JobFactory(batch=active)
    for batch in (paused, cancelled, deleted, completed):
        JobFactory(batch=batch)
    batch_pause(batch=paused, actor=system_actor)
    # Cancel and delete turn the jobs cancelled; put them back to pending to
    # prove the batch flag alone keeps them out.
    batch_cancel(batch=cancelled, actor=system_actor)
    batch_delete(batch=deleted, actor=system_actor)
    Job.objects.filter(batch__in=[cancelled, deleted]).update(status=JobStatus.PENDING)

    claimed = claim_jobs(worker_id="w1", limit=10)

    assert [job.pk for job in claimed] == [claimable.pk]


def test_claim_jobs__takes_only_pending_jobs(account):
    batch = BatchFactory(account=account)
    pending = JobFactory(batch=batch)
    for status in (
        JobStatus.IN_PROGRESS,
        JobStatus.COMPLETED,
        JobStatus.DONE,
        JobStatus.FAILED,
        JobStatus.SUSPENDED,
        JobStatus.CANCELLED,
    ):
        JobFactory(batch=batch, status=status)
    JobFactory(
        batch=batch,
        status=JobStatus.SCHEDULED,
        scheduled_at=timezone.now() + timedelta(hours=1),
    )

    assert [job.pk for job in claim_jobs(worker_id="w1", limit=10)] == [pending.pk]


def test_claim_jobs__respects_the_limit(account):
    batch = BatchFactory(account=account)
    JobFactory.create_batch(5, batch=batch)

    first = claim_jobs(worker_id="w1", limit=3)
    second = claim_jobs(worker_id="w2", limit=3)

    assert len(first) == 3
    assert len(second) == 2
    assert claim_jobs(worker_id="w3", limit=3) == []
    assert {j.pk for j in first}.isdisjoint({j.pk for j in second})


def test_claim_jobs__sets_status_owner_and_lease(account):
    job = JobFactory(batch=BatchFactory(account=account), variables={"name": "Ana"})

    [claimed] = claim_jobs(worker_id="host:42", limit=1, lease_seconds=90)

    job.refresh_from_db()
    assert claimed.pk == job.pk
    assert claimed.variables == {"name": "Ana"}  # JSON decoded, not a string
    assert job.status == JobStatus.IN_PROGRESS
    assert job.claimed_by == "host:42"
    assert job.claimed_at is not None
    assert job.dialed_at is None
    lease = (job.lease_expires_at - job.claimed_at).total_seconds()
    assert lease == pytest.approx(90, abs=1)
    assert job.attempts == 0  # an attempt is spent when it is dialled


def test_claim_jobs__zero_limit_claims_nothing(account):
    JobFactory(batch=BatchFactory(account=account))

    assert claim_jobs(worker_id="w1", limit=0) == []


def test_promote_due_jobs__makes_due_scheduled_jobs_pending(account):
    batch = BatchFactory(account=account)
    now = timezone.now()
    due = JobFactory(
        batch=batch, status=JobStatus.SCHEDULED, scheduled_at=now - timedelta(1)
    )
    later = JobFactory(
        batch=batch, status=JobStatus.SCHEDULED, scheduled_at=now + timedelta(1)
    )

    assert promote_due_jobs() == 1
    assert [j.pk for j in claim_jobs(worker_id="w1", limit=5)] == [due.pk]
    later.refresh_from_db()
    assert later.status == JobStatus.SCHEDULED


def test_claim_plan__walks_indexes_lazily_without_sorting_jobs(account):
    """The claim never sorts or scans the jobs table: it walks the partial
    indexes in order and stops at the limit."""
    from jobs.claim import CLAIM_SQL

    JobFactory.create_batch(3, batch=BatchFactory(account=account))
    with connection.cursor() as cursor:
        cursor.execute(
            "EXPLAIN (COSTS OFF) " + CLAIM_SQL,
            {"n": 5, "worker_id": "w", "token": "t", "lease": 60},
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())

    assert "job_claim_idx" in plan
    assert "job_claim_nobatch_idx" in plan
    # (The outer UPDATE may hash-join on a tiny test table; on a real one it
    # looks the picked ids up by primary key. bench/ measures the scaling.)
    sort_keys = [line for line in plan.splitlines() if "Sort Key" in line]
    assert all(key.strip().startswith("Sort Key: b.") for key in sort_keys), plan
