"""GET /jobs/{id}/explain: every reason code, and a callable job's place."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.services import account_set_dialing_rules
from batches.services import batch_cancel, batch_pause
from batches.tests.factories import BatchFactory
from callcenter.actor import Actor
from jobs import dnc
from jobs.explain import explain, summary_counts, summary_text
from jobs.models import JobStatus
from jobs.tests.factories import JobFactory

pytestmark = pytest.mark.django_db

STAFF = Actor.system("staff in tests")


def codes(job):
    job.refresh_from_db()
    answer = explain(job)
    return answer["callable"], [r["code"] for r in answer["reasons"]], answer


def test_explain__a_callable_job_says_how_many_are_ahead(api_client, account):
    batch = BatchFactory(account=account)
    first = JobFactory(batch=batch)
    JobFactory(batch=batch, priority=5)  # ahead: higher priority
    job = JobFactory(batch=batch)
    JobFactory(batch=batch, status=JobStatus.COMPLETED)  # not pending

    body = api_client.get(f"/api/v1/jobs/{job.pk}/explain").json()

    assert body["callable"] is True
    assert body["jobs_ahead"] == 2
    assert [r["code"] for r in body["reasons"]] == ["callable"]
    assert explain(first)["jobs_ahead"] == 1


def test_explain__batch_paused_names_who_when_and_source(account, system_actor):
    batch = BatchFactory(account=account)
    job = JobFactory(batch=batch)
    batch_pause(batch=batch, actor=system_actor, reason="lunch")

    callable_, found, answer = codes(job)

    assert (callable_, found) == (False, ["batch_paused"])
    detail = answer["reasons"][0]["detail"]
    assert "by tests" in detail
    assert "source: system" in detail
    assert "lunch" in detail
    assert "paused since 20" in detail


def test_explain__batch_cancelled_and_finished(account, system_actor):
    batch = BatchFactory(account=account)
    job = JobFactory(batch=batch)
    batch_cancel(batch=batch, actor=system_actor)

    callable_, found, answer = codes(job)

    assert (callable_, found) == (False, ["finished"])  # the job was cancelled
    assert "cancelled" in answer["reasons"][0]["detail"]
    paused_job = JobFactory(batch=BatchFactory(account=account))
    paused_job.batch.cancelled_at = timezone.now()
    paused_job.batch.is_active = False
    paused_job.batch.save()
    assert codes(paused_job)[1] == ["batch_cancelled"]


def test_explain__scheduled_and_retry_backoff_with_until(account):
    later = timezone.now() + timedelta(hours=1)
    batch = BatchFactory(account=account)
    scheduled = JobFactory(batch=batch, status=JobStatus.SCHEDULED, scheduled_at=later)
    retry = JobFactory(
        batch=batch, status=JobStatus.SCHEDULED, scheduled_at=later, attempts=1
    )

    _, found, answer = codes(scheduled)
    assert found == ["scheduled"]
    assert answer["reasons"][0]["until"] == later.isoformat()
    assert codes(retry)[1] == ["retry_backoff"]


def test_explain__dnc_names_the_list_and_the_date(account):
    job = JobFactory(batch=BatchFactory(account=account))
    dnc.dnc_add(account=None, numbers=[job.phone_number], actor=STAFF)

    _, found, answer = codes(job)

    assert found == ["dnc"]
    assert "system-wide do-not-call list since" in answer["reasons"][0]["detail"]


def test_explain__no_credits_pending_and_suspended(account, settings):
    settings.CALL_COST_PER_CALL = 5
    account.credits = 2
    account.save(update_fields=["credits"])
    batch = BatchFactory(account=account)
    pending = JobFactory(batch=batch)
    suspended = JobFactory(batch=batch, status=JobStatus.SUSPENDED)

    assert codes(pending)[1] == ["no_credits"]
    assert codes(suspended)[1] == ["no_credits"]


def test_explain__no_consent(account):
    job = JobFactory(batch=BatchFactory(account=account, voice="ai"))

    _, found, answer = codes(job)

    assert found == ["no_consent"]
    assert "FCC 24-17" in answer["reasons"][0]["detail"]


def test_explain__number_not_allowed_and_in_progress(account):
    batch = BatchFactory(account=account)
    spain = JobFactory(batch=batch, phone_number="+34612345678")
    account_set_dialing_rules(account=account, actor=STAFF, allowed_countries=["US"])
    running = JobFactory(batch=batch, status=JobStatus.IN_PROGRESS, claimed_by="w9")

    assert codes(spain)[1] == ["number_not_allowed"]
    assert codes(running)[1] == ["in_progress"]


def test_explain__api_is_scoped_to_the_account(other_client, account):
    job = JobFactory(batch=BatchFactory(account=account))

    assert other_client.get(f"/api/v1/jobs/{job.pk}/explain").status_code == 404


def test_batch_summary__sums_the_reasons(account, settings):
    batch = BatchFactory(account=account, voice="ai")
    consent = timezone.now()
    listed = [JobFactory(batch=batch, consent_at=consent) for _ in range(3)]
    JobFactory(batch=batch)  # no consent
    JobFactory(batch=batch, status=JobStatus.SUSPENDED, consent_at=consent)
    JobFactory(
        batch=batch,
        status=JobStatus.CANCELLED,
        stop_code="opt_out",
        consent_at=consent,
    )
    dnc.dnc_add(
        account=account, numbers=[j.phone_number for j in listed], actor=STAFF
    )

    counts = summary_counts(batch)

    assert counts == {
        "dnc": 3,
        "no_consent": 1,
        "no_credits": 1,
        "stopped:opt_out": 1,
    }
    assert summary_text(batch).startswith("3 on a do-not-call list, ")
