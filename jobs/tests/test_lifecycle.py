from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection
from django.db.models.functions import Now

from batches.models import Batch
from batches.tests.factories import BatchFactory
from jobs.claim import claim_jobs
from jobs.dialers.base import CallResult, CallStatus, Dialer
from jobs.lifecycle import (
    ERROR_AFTER_DIAL,
    WORKER_LOST,
    WORKER_STOPPED,
    mark_dialed,
    record_call,
    recover_expired_leases,
    release_orphans,
    renew_leases,
)
from jobs.models import Job, JobStatus
from jobs.services import job_cancel
from jobs.signals import jobs_finished
from jobs.tests.factories import JobFactory
from jobs.worker import database_now

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@pytest.fixture
def finished():
    seen = []

    def receiver(sender, finished, **kwargs):
        seen.extend((job.pk, outcome) for job, outcome in finished)

    jobs_finished.connect(receiver)
    yield seen
    jobs_finished.disconnect(receiver)


def dialled_job(account, batch_fields=None, **fields) -> Job:
    JobFactory(batch=BatchFactory(account=account, **(batch_fields or {})), **fields)
    [claimed] = claim_jobs(worker_id="w1", limit=1)
    [dialled] = mark_dialed(jobs=[claimed], worker_id="w1")
    return dialled


def record(job: Job, outcome: str, *, never_connected: bool = False, **kwargs) -> str:
    assert job.dialed_at is not None
    return record_call(
        job_id=job.pk,
        worker_id="w1",
        dialed_at=job.dialed_at,
        call_id="sim-1",
        result=CallResult(
            outcome=outcome, duration_seconds=2.5, never_connected=never_connected
        ),
        **kwargs,
    )


def test_mark_dialed__spends_an_attempt_and_skips_jobs_cancelled_since_the_claim(
    account, system_actor
):
    batch = BatchFactory(account=account)
    JobFactory.create_batch(2, batch=batch)
    claimed = claim_jobs(worker_id="w1", limit=2)
    job_cancel(job=claimed[1], actor=system_actor)

    dialled = mark_dialed(jobs=claimed, worker_id="w1")

    assert [j.pk for j in dialled] == [claimed[0].pk]
    fresh = Job.objects.get(pk=claimed[0].pk)
    assert fresh.attempts == 1
    assert fresh.dialed_at is not None
    assert Job.objects.get(pk=claimed[1].pk).attempts == 0


@pytest.mark.postgres_only
def test_mark_dialed__takes_the_dial_time_from_the_database_clock(account):
    """dialed_at and claimed_at come from one clock, the database's: a worker
    whose own clock is years off changes neither."""
    JobFactory(batch=BatchFactory(account=account))
    with time_machine.travel(datetime(2031, 1, 1, tzinfo=UTC), tick=False):
        [claimed] = claim_jobs(worker_id="w1", limit=1)
        [dialled] = mark_dialed(jobs=[claimed], worker_id="w1")

    stored = Job.objects.get(pk=claimed.pk).dialed_at
    assert stored == dialled.dialed_at
    assert abs(stored - database_now()) < timedelta(minutes=5)
    assert abs(stored - claimed.claimed_at) < timedelta(minutes=5)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("outcome", ["answered", "voicemail"])
def test_record_call__answered_or_voicemail_completes(account, finished, outcome):
    job = dialled_job(account)

    assert record(job, outcome) == JobStatus.COMPLETED

    job.refresh_from_db()
    assert job.result["outcome"] == outcome
    assert job.result["call_id"] == "sim-1"
    assert job.finished_at is not None
    assert job.lease_expires_at is None
    [entry] = job.attempt_log
    assert entry["attempt"] == 1
    assert entry["outcome"] == outcome
    assert entry["worker"] == "w1"
    assert finished == [(job.pk, outcome)]


@pytest.mark.parametrize(
    ("outcome", "never_connected", "delay"),
    [("busy", False, 600), ("no_answer", False, 1800), ("error", True, 300)],
)
def test_record_call__default_retry_policy_schedules_a_retry_after_its_delay(
    account, outcome, never_connected, delay
):
    """Defaults: busy after 10 min, no_answer after 30 min; an error is
    retried only when the call certainly reached no one."""
    job = dialled_job(account, max_attempts=3)

    with time_machine.travel(NOW, tick=False):
        assert record(job, outcome, never_connected=never_connected) == (
            JobStatus.SCHEDULED
        )

    job.refresh_from_db()
    assert job.scheduled_at == NOW + timedelta(seconds=delay)
    assert job.claimed_by == ""
    assert job.dialed_at is None
    assert job.finished_at is None
    assert job.last_error


@pytest.mark.parametrize(
    ("outcome", "status"),
    [("voicemail", JobStatus.COMPLETED), ("failed", JobStatus.FAILED)],
)
def test_record_call__voicemail_and_failed_are_not_retried_by_default(
    account, outcome, status
):
    job = dialled_job(account, max_attempts=3)

    assert record(job, outcome) == status
    job.refresh_from_db()
    assert job.scheduled_at is None


@pytest.mark.parametrize("outcome", ["voicemail", "failed"])
def test_record_call__a_policy_can_retry_voicemail_and_failed(account, outcome):
    """A voicemail would take the one-statement success path: the policy is
    checked there too."""
    policy = {outcome: {"retry": True, "delay_seconds": 120}}
    job = dialled_job(account, {"retry_policy": policy}, max_attempts=3)

    with time_machine.travel(NOW, tick=False):
        assert record(job, outcome) == JobStatus.SCHEDULED

    job.refresh_from_db()
    assert job.scheduled_at == NOW + timedelta(seconds=120)


def test_record_call__a_policy_can_turn_retries_off(account):
    policy = {"busy": {"retry": False}, "no_answer": {"delay_seconds": 60}}
    job = dialled_job(account, {"retry_policy": policy}, max_attempts=3)

    assert record(job, "busy") == JobStatus.FAILED
    job.refresh_from_db()
    assert job.last_error == "busy"

    other = dialled_job(account, {"retry_policy": policy}, max_attempts=3)
    with time_machine.travel(NOW, tick=False):
        assert record(other, "no_answer") == JobStatus.SCHEDULED
    other.refresh_from_db()
    assert other.scheduled_at == NOW + timedelta(seconds=60)


def test_record_call__an_error_after_connecting_is_never_retried_whatever_the_policy(
    account,
):
    policy = {"error": {"retry": True, "delay_seconds": 0}}
    job = dialled_job(account, {"retry_policy": policy}, max_attempts=3)

    assert record(job, "error") == JobStatus.FAILED
    job.refresh_from_db()
    assert job.last_error.startswith(ERROR_AFTER_DIAL)


def test_record_call__a_retry_waits_for_the_next_window_opening(account):
    """The retry is at its delay or at the window's next opening, whichever
    is later: busy at 16:55 in California, window 09:00-17:00 -> 09:00 the
    next day, not 17:05."""
    window = {"start": "09:00", "end": "17:00", "days": ["mon", "tue", "wed"]}
    # Dialled under an all-day window (the gate decides on the database's
    # clock, which no test moves); the window is narrowed before the outcome.
    job = dialled_job(account, max_attempts=3)
    Batch.objects.filter(pk=job.batch_id).update(calling_window=window)
    la = ZoneInfo("America/Los_Angeles")
    monday = datetime(2026, 3, 2, 16, 55, tzinfo=la)

    with time_machine.travel(monday, tick=False):
        assert record(job, "busy") == JobStatus.SCHEDULED
    job.refresh_from_db()
    assert job.scheduled_at == datetime(2026, 3, 3, 9, 0, tzinfo=la)

    # Inside the window the delay decides.
    other = dialled_job(account, max_attempts=3)
    Batch.objects.filter(pk=other.batch_id).update(calling_window=window)
    with time_machine.travel(monday - timedelta(hours=2), tick=False):
        record(other, "busy")
    other.refresh_from_db()
    assert other.scheduled_at == monday - timedelta(hours=2) + timedelta(minutes=10)


@pytest.mark.django_db(transaction=True)
def test_record_call__error_after_the_call_was_placed_fails_without_a_retry(
    account, finished
):
    """The call may have connected: it is never dialled again on a guess,
    even with attempts left."""
    job = dialled_job(account, max_attempts=3)

    assert record(job, "error") == JobStatus.FAILED

    job.refresh_from_db()
    assert job.attempts == 1
    assert job.last_error.startswith(ERROR_AFTER_DIAL)
    assert job.scheduled_at is None
    assert finished == [(job.pk, "error")]


@pytest.mark.django_db(transaction=True)
def test_record_call__retryable_outcome_on_the_last_attempt_fails(account, finished):
    job = dialled_job(account, max_attempts=1)

    assert record(job, "no_answer") == JobStatus.FAILED

    job.refresh_from_db()
    assert "attempts exhausted" in job.last_error
    assert finished == [(job.pk, "no_answer")]


def test_record_call__failed_outcome_fails_at_once(account):
    job = dialled_job(account, max_attempts=3)

    assert record(job, "failed") == JobStatus.FAILED


def test_record_call__interrupted_connected_call_fails_with_the_reason(account):
    job = dialled_job(account)

    assert record(job, "answered", interrupted=WORKER_STOPPED) == JobStatus.FAILED

    job.refresh_from_db()
    assert job.last_error == WORKER_STOPPED
    assert job.result["outcome"] == "answered"


def test_record_call__cancelled_job_keeps_its_status_and_gets_the_outcome(
    account, system_actor
):
    job = dialled_job(account)
    job_cancel(job=job, actor=system_actor, reason="Script is wrong")

    assert record(job, "answered") == JobStatus.CANCELLED

    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert job.cancel_reason == "Script is wrong"
    assert job.result["outcome"] == "answered"
    assert len(job.attempt_log) == 1


def test_record_call__is_idempotent(account):
    job = dialled_job(account)

    record(job, "answered")
    record(job, "answered")

    job.refresh_from_db()
    assert len(job.attempt_log) == 1


def test_record_call__job_deleted_meanwhile_is_reported_gone(account):
    job = dialled_job(account)
    Job.objects.filter(pk=job.pk).delete()

    assert record(job, "answered") == "gone"


def test_renew_leases__extends_held_jobs_and_reports_the_rest(account, system_actor):
    batch = BatchFactory(account=account)
    JobFactory.create_batch(3, batch=batch)
    held, cancelled, other = claim_jobs(worker_id="w1", limit=3)
    job_cancel(job=cancelled, actor=system_actor)
    Job.objects.filter(pk=other.pk).update(claimed_by="w2")
    Job.objects.filter(pk=held.pk).update(lease_expires_at=Now())

    lost = renew_leases(
        worker_id="w1", job_ids=[held.pk, cancelled.pk, other.pk], lease_seconds=120
    )

    assert lost == {cancelled.pk, other.pk}
    held.refresh_from_db()
    # Leases are on the database's clock.
    assert held.lease_expires_at > database_now() + timedelta(seconds=100)


def expire(*jobs: Job) -> None:
    """Expired on the database's clock, which recovery compares with."""
    Job.objects.filter(pk__in=[j.pk for j in jobs]).update(
        lease_expires_at=Now() - timedelta(seconds=1)
    )


def test_recover_expired_leases__undialled_job_returns_to_pending_for_free(account):
    JobFactory(batch=BatchFactory(account=account))
    [job] = claim_jobs(worker_id="dead", limit=1)
    expire(job)

    assert recover_expired_leases(recoverer="w2") == 1

    job.refresh_from_db()
    assert job.status == JobStatus.PENDING
    assert job.attempts == 0
    assert job.claimed_by == ""
    assert job.attempt_log == []


def test_recover_expired_leases__dialled_job_fails_as_worker_lost(account):
    job = dialled_job(account)
    expire(job)

    assert recover_expired_leases(recoverer="w2") == 1

    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.last_error == WORKER_LOST
    assert job.attempts == 1
    assert job.attempt_log[-1]["outcome"] == "worker_lost"
    assert job.attempt_log[-1]["recovered_by"] == "w2"


class NeverConnectedDialer(Dialer):
    name = "never"

    def place_call(self, job):
        raise NotImplementedError

    def hangup(self, handle):
        raise NotImplementedError

    def call_status(self, call_id):
        return CallStatus.NEVER_CONNECTED


def test_recover_expired_leases__call_confirmed_never_connected_is_retried(account):
    job = dialled_job(account)
    Job.objects.filter(pk=job.pk).update(call_id="prov-1")
    expire(job)

    recover_expired_leases(recoverer="w2", dialer=NeverConnectedDialer())

    job.refresh_from_db()
    assert job.status == JobStatus.PENDING
    assert job.attempts == 0
    assert job.attempt_log[-1]["outcome"] == "never_connected"


def test_recover_expired_leases__leaves_live_leases_alone(account):
    job = dialled_job(account)

    assert recover_expired_leases(recoverer="w2") == 0
    job.refresh_from_db()
    assert job.status == JobStatus.IN_PROGRESS


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_recover_expired_leases__two_recoverers_at_once_resolve_each_job_once(
    account,
):
    batch = BatchFactory(account=account)
    JobFactory.create_batch(300, batch=batch)
    claimed = claim_jobs(worker_id="dead", limit=300)
    mark_dialed(jobs=claimed[:150], worker_id="dead")
    expire(*claimed)
    counts: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def recoverer(name: str) -> None:
        try:
            start.wait()
            counts.append(recover_expired_leases(recoverer=name, limit=1000))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=recoverer, args=(f"r{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert sum(counts) == 300
    assert Job.objects.filter(status=JobStatus.PENDING).count() == 150
    assert Job.objects.filter(status=JobStatus.FAILED).count() == 150
    for job in Job.objects.filter(status=JobStatus.FAILED):
        assert len(job.attempt_log) == 1


def test_release_orphans__hands_back_held_jobs_without_a_call(account):
    batch = BatchFactory(account=account)
    JobFactory.create_batch(3, batch=batch)
    calling, marked, claimed_only = claim_jobs(worker_id="w1", limit=3)
    mark_dialed(jobs=[calling, marked], worker_id="w1")

    assert release_orphans(worker_id="w1", token="", keep_ids=[calling.pk]) == 2

    for job in (marked, claimed_only):
        job.refresh_from_db()
        assert job.status == JobStatus.PENDING
        assert job.attempts == 0
        assert job.dialed_at is None
    calling.refresh_from_db()
    assert calling.status == JobStatus.IN_PROGRESS


def test_release_orphans__leaves_jobs_of_another_process_with_the_same_id(
    account,
):
    JobFactory(batch=BatchFactory(account=account))
    [job] = claim_jobs(worker_id="w1", token="earlier", limit=1)
    mark_dialed(jobs=[job], worker_id="w1", token="earlier")

    assert release_orphans(worker_id="w1", token="later", keep_ids=[]) == 0
    job.refresh_from_db()
    assert job.status == JobStatus.IN_PROGRESS


@pytest.mark.django_db
def test_fenced_writes__refused_and_logged_with_both_tokens(account, caplog):
    """A stale worker's lease renewal, dial mark and outcome about jobs
    another worker recovered and claimed change nothing, and each refusal is
    logged with the stale token and the holder's."""
    from jobs.lifecycle import CallEnd, record_calls, renew_leases

    batch = BatchFactory(account=account)
    JobFactory.create_batch(2, batch=batch)
    stale = claim_jobs(worker_id="w1", limit=2, token="t1")
    # Expired on the clock recovery compares with (the database's).
    Job.objects.update(lease_expires_at=Now() - timedelta(seconds=1))
    assert recover_expired_leases(recoverer="w2") == 2
    assert len(claim_jobs(worker_id="w2", limit=2, token="t2")) == 2
    before = {
        j.pk: (j.claimed_by, j.claim_token, j.lease_expires_at, j.attempts)
        for j in Job.objects.all()
    }

    caplog.set_level("WARNING", logger="jobs.lifecycle")
    assert mark_dialed(jobs=stale[:1], worker_id="w1", token="t1") == []
    assert renew_leases(worker_id="w1", job_ids=[j.pk for j in stale], token="t1") == {
        j.pk for j in stale
    }
    record_calls(
        ended=[
            CallEnd(
                job_id=stale[1].pk,
                dialed_at=stale[1].claimed_at,
                call_id="",
                result=CallResult(outcome="answered", duration_seconds=3),
            )
        ],
        worker_id="w1",
        token="t1",
    )

    after = {
        j.pk: (j.claimed_by, j.claim_token, j.lease_expires_at, j.attempts)
        for j in Job.objects.all()
    }
    assert after == before
    assert set(Job.objects.values_list("status", flat=True)) == {JobStatus.IN_PROGRESS}
    refused = [
        (r.write, r.job_id, r.token, r.holder, r.holder_token)
        for r in caplog.records
        if getattr(r, "action", "") == "job.fenced_write_refused"
    ]
    first, second = (j.pk for j in stale)
    assert sorted(refused) == sorted(
        [
            ("dial", first, "t1", "w2", "t2"),
            ("renew", first, "t1", "w2", "t2"),
            ("renew", second, "t1", "w2", "t2"),
            ("outcome", second, "t1", "w2", "t2"),
        ]
    )
