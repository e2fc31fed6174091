from __future__ import annotations

import pytest
from django.db import connection

from jobs.claim import claim_jobs
from jobs.models import Job, JobStatus
from jobs.tests.factories import JobFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _claim(settings, prepared: bool, worker_id: str) -> list[Job]:
    settings.DATABASE_PREPARED_STATEMENTS = prepared
    return claim_jobs(worker_id=worker_id, limit=2)


@pytest.mark.parametrize("prepared", [True, False])
def test_claim_jobs__prepared_and_unprepared_return_the_same_jobs(settings, prepared):
    first = JobFactory(priority=5, variables={"first_name": "Ana", "n": [1, 2]})
    second = JobFactory(batch=first.batch, priority=1)
    JobFactory(batch=first.batch, priority=0)

    jobs = _claim(settings, prepared, "w-1")

    assert [j.pk for j in jobs] == [first.pk, second.pk]
    claimed = jobs[0]
    assert claimed.status == JobStatus.IN_PROGRESS
    assert claimed.claimed_by == "w-1"
    assert claimed.variables == {"first_name": "Ana", "n": [1, 2]}
    assert claimed.attempt_log == []
    assert claimed.claimed_at.tzinfo is not None
    assert claimed.lease_expires_at > claimed.claimed_at
    assert claimed._state.adding is False
    assert Job.objects.get(pk=first.pk).claimed_by == "w-1"


def test_claim_jobs__prepared_plans_once_per_limit(settings):
    JobFactory.create_batch(3)
    settings.DATABASE_PREPARED_STATEMENTS = True

    for _ in range(3):
        claim_jobs(worker_id="w-1", limit=1)

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE name = %s",
            ["callcenter_claim_1"],
        )
        assert cursor.fetchone()[0] == 1


def test_claim_jobs__prepares_again_after_discard_all(settings):
    JobFactory.create_batch(2)
    settings.DATABASE_PREPARED_STATEMENTS = True
    claim_jobs(worker_id="w-1", limit=1)
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")

    assert len(claim_jobs(worker_id="w-1", limit=1)) == 1


@pytest.mark.parametrize("prepared", [True, False])
def test_claim_jobs__async_commit_is_the_claims_own(settings, prepared):
    """The claim turns synchronous_commit off for its own transaction only:
    the worker's next write (mark_dialed) must still wait for the flush."""
    JobFactory()
    assert _claim(settings, prepared, "w-1")
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == "on"
