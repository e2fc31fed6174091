from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection
from django.utils import timezone

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


def dialled_job(account, **fields) -> Job:
    JobFactory(batch=BatchFactory(account=account), **fields)
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
    ("outcome", "never_connected"),
    [("busy", False), ("no_answer", False), ("error", True)],
)
def test_record_call__retryable_outcome_schedules_a_retry_with_backoff(
    account, settings, outcome, never_connected
):
    """An error is retried only when the call certainly reached no one."""
    settings.JOB_RETRY_BACKOFF_SECONDS = 30
    job = dialled_job(account, max_attempts=3)

    with time_machine.travel(NOW, tick=False):
        assert record(job, outcome, never_connected=never_connected) == (
            JobStatus.SCHEDULED
        )

    job.refresh_from_db()
    assert job.scheduled_at == NOW + timedelta(seconds=30)
    assert job.claimed_by == ""
    assert job.dialed_at is None
    assert job.finished_at is None
    assert job.last_error


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


def test_record_call__backoff_doubles_per_attempt(account, settings):
    settings.JOB_RETRY_BACKOFF_SECONDS = 30
    job = dialled_job(account, max_attempts=3)
    Job.objects.filter(pk=job.pk).update(attempts=2)

    with time_machine.travel(NOW, tick=False):
        record(job, "busy")

    job.refresh_from_db()
    assert job.scheduled_at == NOW + timedelta(seconds=60)


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
    Job.objects.filter(pk=held.pk).update(lease_expires_at=timezone.now())

    lost = renew_leases(
        worker_id="w1", job_ids=[held.pk, cancelled.pk, other.pk], lease_seconds=120
    )

    assert lost == {cancelled.pk, other.pk}
    held.refresh_from_db()
    assert held.lease_expires_at > timezone.now() + timedelta(seconds=100)


def expire(*jobs: Job) -> None:
    Job.objects.filter(pk__in=[j.pk for j in jobs]).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
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
