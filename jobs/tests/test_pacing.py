"""Pacing and capacity shared by every worker (jobs/pacing.py): send slots
granted by the database, and the provider account's concurrency cap counted
in the dial mark's transaction."""

from __future__ import annotations

import itertools
import threading
import time
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from batches.services import batch_pause
from batches.tests.factories import BatchFactory
from callcenter.actor import Actor
from jobs import pacing
from jobs.claim import claim_jobs
from jobs.dialers.http import HttpDialer
from jobs.dialers.simulated import SimulatedDialer
from jobs.lifecycle import mark_dialed
from jobs.models import CallAttempt, DialerPace, Job, JobEvent, JobStatus
from jobs.services import job_cancel
from jobs.tests.factories import JobFactory
from jobs.tests.fake_twilio import ANSWERED
from jobs.tests.test_twilio import fake, run_worker, twilio  # noqa: F401
from jobs.worker import CallWorker

ACTOR = Actor.system("tests")


def limits(**kwargs) -> pacing.Pacing:
    return pacing.Pacing(key="test:acct", dialer="twilio", **kwargs)


def test_pacing__interval_adds_the_guard_to_one_over_the_rate():
    assert limits(calls_per_second=5, guard_seconds=0.05).interval == pytest.approx(
        0.21
    )
    assert limits(calls_per_second=1, guard_seconds=0).interval == 1.0


@pytest.mark.django_db
def test_take_slot__consecutive_slots_are_an_interval_apart():
    pace = limits(calls_per_second=4, guard_seconds=0.0)
    first = pacing.take_slot(pace)
    slots = [first] + [pacing.take_slot(pace) for _ in range(4)]
    gaps = [(b.at - a.at).total_seconds() for a, b in itertools.pairwise(slots)]
    assert gaps == pytest.approx([0.25] * 4)
    assert DialerPace.objects.get(key="test:acct").next_slot == slots[-1].at + (
        timedelta(seconds=0.25)
    )


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_take_slot__threads_never_share_or_crowd_a_slot():
    """Eight threads take slots at once: the database serialises them."""
    pace = limits(calls_per_second=50, guard_seconds=0.0)
    taken: list = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def take() -> None:
        try:
            start.wait()
            for _ in range(10):
                slot = pacing.take_slot(pace)
                with lock:
                    taken.append(slot.at)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    taken.sort()
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(taken)]
    assert len(taken) == 80
    assert min(gaps) >= 0.02 - 1e-6


@pytest.mark.django_db
def test_mark_dialed__at_capacity_defers_without_spending_an_attempt(account):
    """The account's cap counts the dialer's attempts with no final status;
    a job beyond it is deferred, not dialled: no attempt, no CallAttempt
    row, the claim released, audited as concurrency_cap."""
    pace = limits(calls_per_second=0, max_concurrent=2)
    JobFactory.create_batch(3, account=account)
    jobs = claim_jobs(worker_id="w1", token="t1", limit=3)
    assert len(jobs) == 3
    one = mark_dialed(jobs=jobs[:1], worker_id="w1", token="t1", dialer="twilio")
    assert len(one) == 1  # an open twilio attempt: one of the two places

    dialled = mark_dialed(
        jobs=jobs[1:], worker_id="w1", token="t1", dialer="twilio", pace=pace
    )

    assert [job.pk for job in dialled] == [jobs[1].pk]
    left = Job.objects.get(pk=jobs[2].pk)
    assert left.status == JobStatus.SCHEDULED
    assert left.attempts == 0
    assert left.claimed_by == ""
    assert not CallAttempt.objects.filter(job_id=left.pk).exists()
    event = JobEvent.objects.get(job_pk=left.pk, action="deferred")
    assert event.changes["code"] == "concurrency_cap"
    still_open = CallAttempt.objects.filter(dialer="twilio", ended_at__isnull=True)
    assert still_open.count() == 2


@pytest.mark.django_db
def test_mark_dialed__other_dialers_and_ended_attempts_leave_room(account):
    pace = limits(calls_per_second=0, max_concurrent=1)
    JobFactory.create_batch(3, account=account)
    jobs = claim_jobs(worker_id="w1", token="t1", limit=3)
    mark_dialed(jobs=jobs[:1], worker_id="w1", token="t1", dialer="simulated")
    ended = mark_dialed(jobs=jobs[1:2], worker_id="w1", token="t1", dialer="twilio")
    CallAttempt.objects.filter(job_id=ended[0].pk).update(
        ended_at=timezone.now(), outcome="answered"
    )

    dialled = mark_dialed(
        jobs=jobs[2:], worker_id="w1", token="t1", dialer="twilio", pace=pace
    )

    assert [job.pk for job in dialled] == [jobs[2].pk]


@pytest.mark.django_db
def test_mark_dialed__keeps_the_granted_slot_on_the_attempt(account):
    pace = limits(calls_per_second=2)
    JobFactory(account=account)
    jobs = claim_jobs(worker_id="w1", token="t1", limit=1)
    slot = pacing.take_slot(pace)

    (job,) = mark_dialed(
        jobs=jobs, worker_id="w1", token="t1", dialer="twilio", pace=pace, slot=slot
    )

    assert CallAttempt.objects.get(token=job.attempt_token).slot_at == slot.at


def paced_worker(cps: float) -> CallWorker:
    dialer = SimulatedDialer(call_seconds=(3600, 3600))
    dialer.pacing = pacing.Pacing(
        key="test:worker", dialer=dialer.name, calls_per_second=cps
    )
    return CallWorker(dialer=dialer, worker_id="w1", listen=False)


def slot_now(worker: CallWorker, *, late: float = 0.0) -> None:
    """Bring the worker's slot due (``late`` seconds ago), without sleeping."""
    assert worker.slot is not None
    worker.slot = (time.monotonic() - late, worker.slot[1])


@pytest.mark.django_db(transaction=True)
def test_worker_pace__a_claimed_job_is_dialled_at_its_slot_not_before(account):
    job = JobFactory(account=account)
    worker = paced_worker(cps=0.5)
    pacing.take_slot(worker.dialer.pacing)  # someone else's: ours is 2 s on

    worker.claim()
    assert [j.pk for j in worker.waiting] == [job.pk]
    assert not worker.pace()  # not yet
    job.refresh_from_db()
    assert (job.status, job.attempts, job.dialed_at) == (JobStatus.IN_PROGRESS, 0, None)
    assert not CallAttempt.objects.filter(job_id=job.pk).exists()

    slot_now(worker)
    assert worker.pace()
    assert list(worker.calls) == [job.pk]
    attempt = CallAttempt.objects.get(job_id=job.pk)
    assert attempt.slot_at == DialerPace.objects.get().next_slot - timedelta(
        seconds=worker.dialer.pacing.interval
    )
    worker.stop()
    worker.stop()  # hang up at once
    worker.run()
    # The thread that placed the call took the send permit first.
    assert DialerPace.objects.get().last_send is not None


@pytest.mark.django_db(transaction=True)
def test_worker_pace__a_slot_reached_late_is_dropped_for_a_fresh_one(account):
    job = JobFactory(account=account)
    worker = paced_worker(cps=0.5)
    pacing.take_slot(worker.dialer.pacing)
    worker.claim()
    worker.pace()
    missed = worker.slot

    slot_now(worker, late=1.0)  # well past half the guard
    assert not worker.pace()

    assert worker.slot is not None
    assert worker.slot[1].at > missed[1].at
    assert [j.pk for j in worker.waiting] == [job.pk]
    assert not CallAttempt.objects.filter(job_id=job.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_worker_pace__batch_paused_while_the_job_waits__released_at_its_slot(account):
    """The dial mark at the slot is the last commit before the provider
    request, so a pause that returned while the job waited holds."""
    batch = BatchFactory(account=account)
    job = JobFactory(batch=batch)
    worker = paced_worker(cps=0.5)
    pacing.take_slot(worker.dialer.pacing)
    worker.claim()
    worker.pace()

    batch_pause(batch=batch, actor=ACTOR)
    slot_now(worker)
    worker.pace()

    assert not worker.calls
    assert not worker.waiting
    job.refresh_from_db()
    assert (job.status, job.attempts) == (JobStatus.PENDING, 0)
    assert not CallAttempt.objects.filter(job_id=job.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_worker_stop__jobs_waiting_for_a_slot_are_released_not_dialled(account):
    jobs = JobFactory.create_batch(2, account=account)
    worker = paced_worker(cps=0.5)
    pacing.take_slot(worker.dialer.pacing)
    worker.claim()
    assert len(worker.waiting) == 1  # a second's worth at 0.5/s

    worker.stop()
    worker.run()

    statuses = set(
        Job.objects.filter(pk__in=[j.pk for j in jobs]).values_list("status", flat=True)
    )
    assert statuses == {JobStatus.PENDING}
    assert not CallAttempt.objects.exists()


@pytest.mark.django_db
def test_send_permit__a_request_right_after_another_waits_the_gap():
    pace = limits(calls_per_second=1, guard_seconds=0.1)
    first = pacing.send_permit(pace)
    second = pacing.send_permit(pace)

    assert first.wait == 0
    assert second.at == first.at + timedelta(seconds=pace.send_gap)
    assert DialerPace.objects.get(key="test:acct").last_send == second.at


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_send_permit__threads_are_let_through_a_gap_apart():
    pace = limits(calls_per_second=50, guard_seconds=0.0)
    taken: list = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def take() -> None:
        try:
            start.wait()
            for _ in range(5):
                permit = pacing.send_permit(pace)
                with lock:
                    taken.append(permit.at)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    taken.sort()
    assert len(taken) == 40
    assert min((b - a).total_seconds() for a, b in itertools.pairwise(taken)) >= (
        0.02 - 1e-6
    )


@pytest.mark.django_db(transaction=True)
def test_worker_renew__a_waiting_job_cancelled_is_dropped_not_dialled(account):
    job = JobFactory(account=account)
    worker = paced_worker(cps=0.5)
    pacing.take_slot(worker.dialer.pacing)
    worker.claim()
    worker.pace()

    job_cancel(job=Job.objects.get(pk=job.pk), actor=ACTOR)
    worker.next_renew = 0.0
    worker.renew()

    assert not worker.waiting
    assert not worker.calls
    assert Job.objects.get(pk=job.pk).status == JobStatus.CANCELLED


def test_http_dialer__paced_only_when_its_settings_ask(settings):
    settings.HTTP_DIALER_URL = "https://agent.example.com/calls"
    settings.HTTP_DIALER_SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    settings.PUBLIC_BASE_URL = "https://cc.example.com"
    assert HttpDialer.from_settings().pacing is None

    settings.HTTP_DIALER_CALLS_PER_SECOND = 3
    settings.HTTP_DIALER_MAX_CONCURRENT_CALLS = 2
    limits = HttpDialer.from_settings().pacing

    assert limits == pacing.Pacing(
        key="http:https://agent.example.com/calls",
        dialer="http",
        calls_per_second=3,
        max_concurrent=2,
        guard_seconds=settings.DIALER_PACING_GUARD_SECONDS,
    )


@pytest.mark.django_db(transaction=True)
def test_twilio_create_retried_after_429__each_try_takes_a_send_permit(
    settings,
    twilio,  # noqa: F811
    account,
    monkeypatch,
):
    settings.TWILIO_CALLS_PER_SECOND = 1000
    twilio.create_faults = [429, 429]
    twilio.script = ANSWERED
    JobFactory(account=account)
    permits = []
    real = pacing.send_permit
    monkeypatch.setattr(
        pacing, "send_permit", lambda limits: permits.append(1) or real(limits)
    )

    run_worker()

    assert len(twilio.creates) == 3
    assert len(permits) == 3  # the first create's, then one per retry
