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


def plan_nodes(node: dict, above: tuple[str, ...] = ()):
    """Every node of an EXPLAIN (FORMAT JSON) plan, with the node types above it."""
    yield node, above
    for child in node.get("Plans", []):
        yield from plan_nodes(child, (*above, node["Node Type"]))


@pytest.mark.postgres_only
def test_claim_plan__walks_indexes_lazily_without_sorting_jobs(settings, account):
    """The claim never sorts or scans the jobs table: it walks the partial
    indexes in order and stops at the limit. Checked on the plan production
    runs: the statement claim_jobs prepares, planned generically (as a
    prepared statement is after its fifth run), over enough analysed rows that
    a sort or a sequential scan would be the planner's choice if it could."""
    settings.DATABASE_PREPARED_STATEMENTS = True
    for prefix in range(2):
        batch = BatchFactory(account=account)
        Job.objects.bulk_create(
            Job(account=account, batch=batch, phone_number=f"+1415{prefix}{i:06d}")
            for i in range(2000)
        )
    Job.objects.bulk_create(
        Job(account=account, batch=None, phone_number=f"+1416{i:07d}")
        for i in range(2000)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE jobs_job")
        cursor.execute("ANALYZE batches_batch")
    assert len(claim_jobs(worker_id="w", limit=5)) == 5
    with connection.cursor() as cursor:
        name = "callcenter_claim_5"
        cursor.execute(
            "SELECT parameter_types::text[] FROM pg_prepared_statements"
            " WHERE name = %s",
            [name],
        )
        [(types,)] = cursor.fetchall()
        # Any values will do: a generic plan does not look at them.
        values = ["'w'" if "char" in t or t == "text" else "60" for t in types]
        cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        cursor.execute(
            f"EXPLAIN (FORMAT JSON, COSTS OFF) EXECUTE {name} ({', '.join(values)})"
        )
        plan = cursor.fetchone()[0][0]["Plan"]

    nodes = list(plan_nodes(plan))
    job_scans = [
        (node, above)
        for node, above in nodes
        if node.get("Relation Name") == "jobs_job" and "Scan" in node["Node Type"]
    ]
    assert {node.get("Index Name") for node, _ in job_scans} >= {
        "job_claim_idx",
        "job_claim_nobatch_idx",
    }, plan
    assert all(node["Node Type"] != "Seq Scan" for node, _ in job_scans), plan
    # The only sort allowed is of the few active batches, by priority.
    sort_keys = [k for node, _ in nodes for k in node.get("Sort Key", [])]
    assert all(key.startswith("b.") for key in sort_keys), sort_keys
    # Lazily: every walk of a claim index that picks jobs stops at a Limit.
    picks = [
        above
        for node, above in job_scans
        if node.get("Index Name") in ("job_claim_idx", "job_claim_nobatch_idx")
        and "LockRows" in above
    ]
    assert len(picks) >= 2, plan
    assert all("Limit" in above for above in picks), plan
