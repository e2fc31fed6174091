"""The worker loop in-process: its units, burst and once modes, its logs."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

import pytest
from django.db import connections, transaction

from accounts.models import Account
from batches.services import batch_pause
from batches.tests.factories import BatchFactory
from callcenter.tests.queries import statements_sent
from jobs.dialers.base import (
    CallHandle,
    CallNotPlaced,
    CallResult,
    CallStatus,
    Dialer,
    Outcome,
)
from jobs.dialers.simulated import SimulatedDialer
from jobs.lifecycle import ERROR_AFTER_DIAL
from jobs.models import Job, JobStatus
from jobs.signals import jobs_finished
from jobs.tests.factories import JobFactory
from jobs.worker import OUT_OF_CREDITS, CallWorker, database_now, listen_params

# The loop closes stale connections between rounds, which needs real commits.
pytestmark = pytest.mark.django_db(transaction=True)


def make_worker(**kwargs) -> CallWorker:
    dialer = SimulatedDialer(
        call_seconds=(0.01, 0.03), outcomes={"answered": 1}, seed=3
    )
    kwargs.setdefault("worker_id", "w1")
    return CallWorker(dialer=dialer, listen=False, **kwargs)


def test_call_worker__burst_calls_every_claimable_job_once(account, system_actor):
    batch = BatchFactory(account=account)
    paused = BatchFactory(account=account, priority=9)
    JobFactory.create_batch(5, batch=batch)
    JobFactory(batch=paused)
    batch_pause(batch=paused, actor=system_actor)
    seen = []
    jobs_finished.connect(
        receiver := lambda sender, finished, **kw: seen.extend(
            job.pk for job, _ in finished
        )
    )
    try:
        make_worker(concurrency=2, burst=True).run()
    finally:
        jobs_finished.disconnect(receiver)

    done = Job.objects.filter(batch=batch)
    assert all(job.status == JobStatus.COMPLETED for job in done)
    assert all(len(job.attempt_log) == 1 for job in done)
    assert sorted(seen) == sorted(job.pk for job in done)
    assert Job.objects.get(batch=paused).status == JobStatus.PENDING


def test_call_worker__once_runs_a_single_claim_round(account):
    JobFactory.create_batch(3, batch=BatchFactory(account=account))

    worker = make_worker(concurrency=2, once=True)
    worker.run()

    assert worker.started == 2
    assert Job.objects.filter(status=JobStatus.COMPLETED).count() == 2
    assert Job.objects.filter(status=JobStatus.PENDING).count() == 1


def test_call_worker__claim_unit_dials_up_to_its_free_slots(account):
    JobFactory.create_batch(3, batch=BatchFactory(account=account))
    worker = make_worker(concurrency=2)

    assert worker.claim() is True
    assert len(worker.calls) == 2
    assert worker.claim() is False  # no free slot
    held = Job.objects.filter(status=JobStatus.IN_PROGRESS, claimed_by="w1")
    assert held.count() == 2
    assert all(job.dialed_at and job.attempts == 1 for job in held)
    worker.stop()
    worker.run()  # lets the two calls finish and exits


def test_call_worker__account_that_cannot_pay_is_suspended_not_dialled(account):
    job = JobFactory(batch=BatchFactory(account=account))
    Account.objects.filter(pk=account.pk).update(credits=0)

    worker = make_worker(burst=True)
    worker.run()

    job.refresh_from_db()
    assert job.status == JobStatus.SUSPENDED
    assert job.attempts == 0
    assert worker.started == 0


def test_call_worker__logs_each_claim_decision(account, caplog):
    job = JobFactory(batch=BatchFactory(account=account))

    with caplog.at_level(logging.INFO, logger="jobs"):
        make_worker(burst=True).run()

    actions = [getattr(r, "action", None) for r in caplog.records]
    assert "claim.claimed" in actions
    assert "claim.empty" in actions
    claimed = next(r for r in caplog.records if r.action == "job.claimed")
    assert claimed.job_id == job.pk
    assert claimed.batch_id == job.batch_id
    assert claimed.worker_id == "w1"


def test_call_worker__promotes_due_scheduled_jobs_and_calls_them(account):
    batch = BatchFactory(account=account)
    # Promotion compares with the database's clock: times from it.
    due = JobFactory(
        batch=batch,
        status=JobStatus.SCHEDULED,
        scheduled_at=database_now() - timedelta(seconds=1),
    )
    later = JobFactory(
        batch=batch,
        status=JobStatus.SCHEDULED,
        scheduled_at=database_now() + timedelta(hours=1),
    )

    make_worker(burst=True).run()

    due.refresh_from_db()
    later.refresh_from_db()
    assert due.status == JobStatus.COMPLETED
    assert later.status == JobStatus.SCHEDULED


@pytest.mark.postgres_only
def test_call_worker__a_round_costs_the_same_statements_for_one_call_or_many(
    account, settings
):
    """Claiming, reserving and marking N jobs, then recording, checking and
    settling their N calls, takes a fixed number of statements, each its own
    transaction: none of them grows with N."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    settings.CALL_COST_PER_CALL = 1
    batch = BatchFactory(account=account)
    JobFactory.create_batch(7, batch=batch)  # one is left: no completion
    counts = []
    for size in (1, 5):
        worker = make_worker(concurrency=size)
        with CaptureQueriesContext(connection) as claim_round:
            assert worker.claim()
        assert len(worker.calls) == size
        for call in worker.calls.values():  # the calls end at once
            call.result = CallResult(outcome=Outcome.ANSWERED, duration_seconds=1)
        with CaptureQueriesContext(connection) as finish_round:
            assert worker.finish_calls()
        sent = [statements_sent(r) for r in (claim_round, finish_round)]
        # Each statement is its own transaction, but for the dial gate's
        # BEGIN ... COMMIT around its one statement (mark and rules' data).
        assert [sql for sql in sent[0] if sql in ("BEGIN", "COMMIT")] == [
            "BEGIN",
            "COMMIT",
        ]
        assert not [sql for sql in sent[1] if sql == "BEGIN"]
        counts.append((len(sent[0]), len(sent[1])))
    # claim, reserve, BEGIN, mark dialled and rules' data, COMMIT | record,
    # completion check, webhook endpoints, settle.
    assert counts == [(5, 4), (5, 4)]
    done = Job.objects.filter(batch=batch, status=JobStatus.COMPLETED)
    assert done.count() == 6
    assert account.credit_entries.filter(kind="settle").count() == 6


@pytest.mark.postgres_only
def test_call_worker__reports_a_worker_id_in_use_only_by_a_live_process(
    account, caplog
):
    """Leftovers of a killed process with the same id are no error; a
    process that keeps renewing its leases under the id is one."""
    from jobs.claim import claim_jobs
    from jobs.lifecycle import renew_leases

    JobFactory.create_batch(2, batch=BatchFactory(account=account))
    [other] = claim_jobs(worker_id="w1", token="other", limit=1)
    worker = make_worker()
    worker.epoch = database_now()

    with caplog.at_level(logging.ERROR, logger="jobs"):
        worker.check_worker_id()
        worker.check_worker_id()  # nothing renewed: a dead process's lease
        assert not caplog.records
        renew_leases(worker_id="w1", token="other", job_ids=[other.pk])
        worker.check_worker_id()
        worker.check_worker_id()  # reported once

    [record] = caplog.records
    assert record.action == "worker.id_in_use"
    assert record.worker_id == "w1"


class TroubledDialer(Dialer):
    """Each job's call goes wrong as its phone number says: place_call
    raises (refused before anything was sent, or a lost reply), or wait()
    raises after the call was placed; call_status knows which calls never
    connected."""

    name = "troubled"
    # Valid numbers: the worker re-checks each number against the account's
    # dialing rules before it dials, and refuses what it cannot classify.
    REFUSED, LOST_REPLY, WAIT_RAISES, NEVER_CONNECTED = (
        "+12025550101",
        "+12025550102",
        "+12025550103",
        "+12025550104",
    )

    def place_call(self, job):
        if job.phone_number == self.REFUSED:
            raise CallNotPlaced("429 too many requests")
        if job.phone_number == self.LOST_REPLY:
            raise TimeoutError("read timed out")
        return CallHandle(f"call-{job.phone_number}")

    def wait(self, handle, timeout):
        raise ConnectionError("provider stream closed")

    def hangup(self, handle):
        pass

    def call_status(self, call_id):
        if call_id == f"call-{self.NEVER_CONNECTED}":
            return CallStatus.NEVER_CONNECTED
        return CallStatus.UNKNOWN


def test_call_worker__an_error_after_the_dial_is_not_retried_blindly(account):
    """A call that may have been placed is never dialled again on a guess:
    only the dialer's or the provider's word that it never connected makes
    an error retryable."""
    batch = BatchFactory(account=account)
    numbers = [
        TroubledDialer.REFUSED,
        TroubledDialer.LOST_REPLY,
        TroubledDialer.WAIT_RAISES,
        TroubledDialer.NEVER_CONNECTED,
    ]
    for number in numbers:
        JobFactory(batch=batch, phone_number=number, max_attempts=3)

    CallWorker(
        dialer=TroubledDialer(), worker_id="w1", concurrency=4, once=True, listen=False
    ).run()

    status = {
        job.phone_number: (job.status, job.attempts)
        for job in Job.objects.filter(batch=batch)
    }
    assert status == {
        TroubledDialer.REFUSED: (JobStatus.SCHEDULED, 1),
        TroubledDialer.LOST_REPLY: (JobStatus.FAILED, 1),
        TroubledDialer.WAIT_RAISES: (JobStatus.FAILED, 1),
        TroubledDialer.NEVER_CONNECTED: (JobStatus.SCHEDULED, 1),
    }
    failed = Job.objects.get(phone_number=TroubledDialer.WAIT_RAISES)
    assert failed.last_error == f"{ERROR_AFTER_DIAL}: provider stream closed"


class SlowStatusDialer(SimulatedDialer):
    """Calls that last until hung up; a status lookup that blocks until the
    test lets it go."""

    def __init__(self) -> None:
        super().__init__(call_seconds=(3600, 3600))
        self.asked = threading.Event()
        self.answer = threading.Event()
        self.answered = False

    def call_status(self, call_id):
        self.asked.set()
        self.answer.wait(60)
        self.answered = True
        return CallStatus.UNKNOWN


def wait_for(predicate, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_call_worker__a_slow_status_lookup_does_not_hold_up_lease_renewal(
    account, settings
):
    """Recovery asks the provider about another worker's lost call, and the
    provider takes its time: meanwhile this worker keeps renewing the lease
    of its own call in flight."""
    from jobs.claim import claim_jobs
    from jobs.lifecycle import WORKER_LOST, mark_dialed

    settings.WORKER_RENEW_SECONDS = 0.1
    batch = BatchFactory(account=account)
    JobFactory(batch=batch)
    [lost] = mark_dialed(jobs=claim_jobs(worker_id="dead", limit=1), worker_id="dead")
    Job.objects.filter(pk=lost.pk).update(
        call_id="prov-1", lease_expires_at=database_now() - timedelta(seconds=1)
    )
    mine = JobFactory(batch=batch)
    dialer = SlowStatusDialer()
    worker = CallWorker(dialer=dialer, worker_id="w1", listen=False)
    assert worker.claim()  # its own call, in flight

    def run() -> None:
        try:
            worker.run()
        finally:
            connections.close_all()

    runner = threading.Thread(target=run)
    runner.start()
    try:
        assert dialer.asked.wait(30), "recovery never asked about the lost call"
        lease = Job.objects.get(pk=mine.pk).lease_expires_at
        wait_for(
            lambda: Job.objects.get(pk=mine.pk).lease_expires_at > lease,
            "the lease to be renewed",
        )
        assert not dialer.answered  # renewed while the lookup was blocked
    finally:
        dialer.answer.set()
    wait_for(
        lambda: Job.objects.get(pk=lost.pk).status != JobStatus.IN_PROGRESS,
        "the lost call's recovery",
    )
    worker.stop()
    worker.stop()  # hang up at once
    runner.join(30)
    assert not runner.is_alive()
    lost.refresh_from_db()
    assert lost.status == JobStatus.FAILED
    assert lost.last_error == WORKER_LOST


@pytest.mark.postgres_only
def test_call_worker__the_suspension_sweep_does_not_hold_up_the_main_thread(
    account,
):
    """An account runs out of credits: its campaigns are swept into
    suspension in the background. Here the sweep waits on a batch row that
    someone else has locked; the worker's claim round returns all the same."""
    from batches.models import Batch

    claimed_batch = BatchFactory(account=account, priority=5)
    JobFactory(batch=claimed_batch)
    busy_batch = BatchFactory(account=account)
    JobFactory(batch=busy_batch)
    Account.objects.filter(pk=account.pk).update(credits=0)
    locked, release = threading.Event(), threading.Event()

    def hold_the_row() -> None:
        try:
            with transaction.atomic():
                Batch.objects.select_for_update().get(pk=busy_batch.pk)
                locked.set()
                release.wait(60)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_the_row)
    holder.start()
    worker = make_worker()
    returned = threading.Event()

    def claim_round() -> None:
        try:
            worker.claim()
            returned.set()
        finally:
            connections.close_all()

    try:
        assert locked.wait(30)
        claimer = threading.Thread(target=claim_round)
        claimer.start()
        # The claim skips the locked batch and takes the other one's job,
        # which the account cannot pay for.
        assert returned.wait(30), "the claim round waited for the sweep"
        assert worker.background.busy()  # the sweep waits for the row
    finally:
        release.set()
        holder.join(30)
    claimer.join(30)
    wait_for(lambda: not worker.background.busy(), "the sweep")
    worker.background.stop(timeout=30)
    assert set(Job.objects.values_list("status", flat=True)) == {JobStatus.SUSPENDED}
    assert not Batch.objects.filter(account=account, is_active=True).exists()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def long_call_worker(clock: Clock) -> CallWorker:
    # Calls that last until hung up.
    dialer = SimulatedDialer(call_seconds=(3600, 3600), outcomes={"answered": 1})
    return CallWorker(dialer=dialer, worker_id="w1", listen=False, clock=clock)


@pytest.fixture
def per_minute(settings):
    settings.CALL_COST_PER_CALL = 1
    settings.CALL_COST_PER_STARTED_MINUTE = 2
    settings.CALL_RESERVE_MINUTES = 1
    settings.WORKER_RENEW_SECONDS = 1
    return settings


def test_call_worker__reserves_each_further_minute_and_hangs_up_when_it_cannot(
    account, per_minute
):
    """The balance pays for the first minute and one more: the call is hung
    up before a third minute starts, and the account never pays less than
    the minutes the call ran."""
    per_minute.CALL_OUT_OF_CREDITS = "hangup"
    Account.objects.filter(pk=account.pk).update(credits=3 + 2)
    job = JobFactory(batch=BatchFactory(account=account))
    clock = Clock()
    worker = long_call_worker(clock)
    assert worker.claim()
    [call] = worker.calls.values()

    clock.now = 30
    assert worker.extend_reservations() is False  # the first minute is paid
    clock.now = 59
    assert worker.extend_reservations() is True  # the second one is taken
    assert call.reserved_minutes == 2
    clock.now = 119
    assert worker.extend_reservations() is True  # no third: hung up
    assert call.hangup_reason == OUT_OF_CREDITS
    wait_for(lambda: call.result is not None, "the hung-up call to end")
    assert worker.finish_calls()

    # The call's cost (1 + 2 per started minute of the dialer's duration,
    # under a minute here) is settled against both reservations.
    ledger = account.credit_entries.order_by("id").values_list("kind", "amount")
    assert list(ledger) == [("reserve", -3), ("extend", -2), ("settle", 2)]
    account.refresh_from_db()
    assert account.credits == 2
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
    assert job.result["hung_up"] is True
    assert job.attempt_log[-1]["error"] == OUT_OF_CREDITS


def test_call_worker__can_let_a_call_run_on_when_the_next_minute_is_unpaid(
    account, per_minute, caplog
):
    """CALL_OUT_OF_CREDITS=continue: the call runs on, the worker says so
    once, and the settlement charges what is left."""
    per_minute.CALL_OUT_OF_CREDITS = "continue"
    Account.objects.filter(pk=account.pk).update(credits=3)
    JobFactory(batch=BatchFactory(account=account))
    clock = Clock()
    worker = long_call_worker(clock)
    assert worker.claim()
    [call] = worker.calls.values()

    with caplog.at_level(logging.WARNING, logger="jobs"):
        clock.now = 59
        assert worker.extend_reservations() is False
        clock.now = 119
        assert worker.extend_reservations() is False  # not asked again

    assert call.hangup_reason == ""
    assert call.unfunded
    [warning] = [r for r in caplog.records if r.action == "credits.extend_failed"]
    assert warning.policy == "continue"
    assert list(account.credit_entries.values_list("kind", flat=True)) == ["reserve"]
    worker.stop()
    worker.stop()  # hang up now
    worker.run()


def test_listen_params__listen_database_url_bypasses_the_default_database(settings):
    """Behind a transaction-mode pooler LISTEN goes to PostgreSQL directly."""
    settings.LISTEN_DATABASE_URL = "postgres://u:pw@db.internal:5433/calls"
    params = listen_params()
    assert (params["host"], params["port"], params["dbname"]) == (
        "db.internal",
        "5433",
        "calls",
    )
    assert (params["user"], params["password"]) == ("u", "pw")


def test_listen_params__default_to_the_default_database(settings):
    settings.LISTEN_DATABASE_URL = ""
    db = connections["default"].settings_dict
    assert listen_params()["dbname"] == db["NAME"]
