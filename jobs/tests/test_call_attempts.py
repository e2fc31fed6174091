"""Call attempts: one row per dial, written with the dial mark, before the
dialer is asked to call; the job's attempt history is read from them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from batches.tests.factories import BatchFactory
from jobs import lifecycle
from jobs.claim import claim_jobs
from jobs.dialers.base import CallHandle, CallResult, Dialer, Outcome
from jobs.history import call_records_purge
from jobs.models import CallAttempt, Job, JobStatus
from jobs.tests.factories import JobFactory
from jobs.worker import CallWorker

pytestmark = pytest.mark.django_db(transaction=True)


class SeeingDialer(Dialer):
    """Answers every call at once, and notes what the database held for the
    job's attempt at the moment it was asked to place the call."""

    name = "seeing"

    def __init__(self, outcomes: list[str] | None = None) -> None:
        self.seen: list[tuple[int, str, int]] = []
        self.outcomes = outcomes or []

    def place_call(self, job: Job) -> CallHandle:
        # A fresh connection in this call thread: only committed rows.
        rows = list(
            CallAttempt.objects.filter(job_id=job.pk).values_list("token", "attempt")
        )
        self.seen.extend((job.pk, token, attempt) for token, attempt in rows)
        handle = CallHandle(f"call-{job.pk}-{job.attempts}")
        outcome = self.outcomes.pop(0) if self.outcomes else Outcome.ANSWERED
        handle.resolve(CallResult(outcome=outcome, duration_seconds=2.5))
        return handle

    def hangup(self, handle: CallHandle) -> None:
        pass


def test_worker__each_attempt_row_is_committed_before_the_call_is_placed(account):
    jobs = JobFactory.create_batch(3, batch=BatchFactory(account=account))
    dialer = SeeingDialer()

    CallWorker(dialer=dialer, listen=False, worker_id="w1", burst=True).run()

    attempts = CallAttempt.objects.order_by("job_id")
    assert [a.job_id for a in attempts] == sorted(j.pk for j in jobs)
    assert sorted(dialer.seen) == sorted((a.job_id, a.token, 1) for a in attempts)
    for attempt in attempts:
        job = Job.objects.get(pk=attempt.job_id)
        assert job.status == JobStatus.COMPLETED
        assert attempt.dialer == "seeing"
        assert attempt.worker_id == "w1"
        assert attempt.outcome == Outcome.ANSWERED
        assert attempt.duration_seconds == 2.5
        assert attempt.provider_call_id == f"call-{job.pk}-1"
        assert attempt.ended_at is not None
        assert attempt.started_at == job.attempt_log[0]["started_at"] or (
            attempt.started_at.isoformat() == job.attempt_log[0]["started_at"]
        )
        assert len(attempt.token) == 32


def test_worker__a_retried_job_has_one_row_per_attempt(account, settings):
    settings.JOB_RETRY_BACKOFF_SECONDS = 0
    job = JobFactory(batch=BatchFactory(account=account), max_attempts=3)
    dialer = SeeingDialer([Outcome.BUSY, Outcome.NO_ANSWER, Outcome.ANSWERED])

    for _ in range(3):
        CallWorker(dialer=dialer, listen=False, worker_id="w1", burst=True).run()
        Job.objects.filter(pk=job.pk, status=JobStatus.SCHEDULED).update(
            status=JobStatus.PENDING
        )

    rows = list(CallAttempt.objects.filter(job_id=job.pk).order_by("attempt"))
    assert [(a.attempt, a.outcome) for a in rows] == [
        (1, "busy"),
        (2, "no_answer"),
        (3, "answered"),
    ]
    assert len({a.token for a in rows}) == 3


def test_mark_dialed__writes_no_attempt_for_a_job_no_longer_held(account):
    job = JobFactory(batch=BatchFactory(account=account))
    [claimed] = claim_jobs(worker_id="w1", limit=1)
    Job.objects.filter(pk=job.pk).update(status=JobStatus.CANCELLED)

    assert lifecycle.mark_dialed(jobs=[claimed], worker_id="w1") == []
    assert not CallAttempt.objects.exists()


def test_record_calls__an_outcome_of_a_superseded_dial_changes_only_its_attempt(
    account,
):
    """The fence: the job was recovered and dialled again since; the late
    outcome of the first dial is kept on its own attempt, the job is left
    to its current dial."""
    JobFactory(batch=BatchFactory(account=account))
    [claimed] = claim_jobs(worker_id="w1", limit=1)
    [first] = lifecycle.mark_dialed(jobs=[claimed], worker_id="w1")
    first_dial, first_token = first.dialed_at, first.attempt_token
    # Given back (never connected) and dialled again by the same process.
    Job.objects.filter(pk=first.pk).update(
        status=JobStatus.PENDING, dialed_at=None, claimed_by=""
    )
    [again] = claim_jobs(worker_id="w1", limit=1)
    [second] = lifecycle.mark_dialed(jobs=[again], worker_id="w1")

    late = lifecycle.CallEnd(
        first.pk,
        first_dial,
        "late",
        CallResult(outcome=Outcome.ANSWERED, duration_seconds=9),
        attempt_token=first_token,
    )
    assert lifecycle.record_calls(worker_id="w1", ended=[late]) == {
        first.pk: JobStatus.IN_PROGRESS
    }

    job = Job.objects.get(pk=first.pk)
    assert job.status == JobStatus.IN_PROGRESS
    assert job.dialed_at == second.dialed_at
    old = CallAttempt.objects.get(token=first_token)
    assert (old.outcome, old.provider_call_id) == ("answered", "late")
    assert CallAttempt.objects.get(token=second.attempt_token).outcome == ""


def test_api_job_attempts__lists_the_jobs_attempts_oldest_first(
    api_client, other_client, account
):
    JobFactory(batch=BatchFactory(account=account), max_attempts=2)
    dialer = SeeingDialer([Outcome.BUSY, Outcome.VOICEMAIL])
    for _ in range(2):
        CallWorker(dialer=dialer, listen=False, worker_id="w1", burst=True).run()
        Job.objects.filter(status=JobStatus.SCHEDULED).update(status=JobStatus.PENDING)
    job = Job.objects.get()

    response = api_client.get(f"/api/v1/jobs/{job.pk}/attempts")

    assert response.status_code == 200
    body = response.json()
    assert [(a["attempt"], a["outcome"]) for a in body] == [
        (1, "busy"),
        (2, "voicemail"),
    ]
    assert body[0]["dialer"] == "seeing"
    assert body[0]["provider_call_id"] == f"call-{job.pk}-1"
    assert "token" not in body[0]
    assert other_client.get(f"/api/v1/jobs/{job.pk}/attempts").status_code == 404


def test_admin_job_page__shows_the_attempts(account, staff_user):
    job = JobFactory(batch=BatchFactory(account=account))
    CallWorker(dialer=SeeingDialer(), listen=False, worker_id="w1", burst=True).run()
    client = Client()
    client.force_login(staff_user)

    page = client.get(reverse("admin:jobs_job_change", args=[job.pk]))

    assert page.status_code == 200
    html = page.content.decode()
    assert f"call-{job.pk}-1" in html
    assert "Call attempts" in html or "call attempts" in html


def test_purge__removes_old_attempts_of_deleted_jobs_only(account, settings):
    settings.CALL_RECORD_RETENTION_DAYS = 30
    kept_job, gone_job = JobFactory.create_batch(2, batch=BatchFactory(account=account))
    CallWorker(dialer=SeeingDialer(), listen=False, worker_id="w1", burst=True).run()
    # Dialled 40 days ago (the dial time is the database's clock).
    CallAttempt.objects.update(started_at=timezone.now() - timedelta(days=40))
    Job.objects.filter(pk=gone_job.pk).delete()

    call_records_purge()

    assert list(CallAttempt.objects.values_list("job_id", flat=True)) == [kept_job.pk]
