from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from accounts import credits
from accounts.models import Account, CreditEntry
from accounts.tests.factories import AccountFactory
from batches import services as batch_services
from batches.models import Batch, BatchEvent
from batches.tests.factories import BatchFactory
from callcenter.actor import Actor, Source
from callcenter.tests.queries import statements_sent
from jobs import billing
from jobs.models import Job, JobStatus
from jobs.tests.factories import JobFactory
from webhooks.models import WebhookEndpoint
from webhooks.tests.server import receiver

__all__ = ["receiver"]

ADMIN = Actor(source=Source.ADMIN, label="ops")


@pytest.fixture(autouse=True)
def _pricing(settings):
    settings.CALL_COST_PER_CALL = 1
    settings.CALL_COST_PER_STARTED_MINUTE = 2
    settings.CALL_RESERVE_MINUTES = 1


def balance(account) -> int:
    return Account.objects.values_list("credits", flat=True).get(pk=account.pk)


def statuses(**filters):
    return sorted(Job.objects.filter(**filters).values_list("status", flat=True))


# --- The cost rule -----------------------------------------------------------


def test_call_cost__per_call_plus_per_started_minute():
    assert credits.call_cost(duration_seconds=0) == 1
    assert credits.call_cost(duration_seconds=1) == 3
    assert credits.call_cost(duration_seconds=60) == 3
    assert credits.call_cost(duration_seconds=61) == 5
    assert credits.call_cost(duration_seconds=0, outcome="error") == 0
    assert credits.call_reservation() == 3


def test_call_cost__either_part_can_be_zero(settings):
    settings.CALL_COST_PER_STARTED_MINUTE = 0
    assert credits.call_cost(duration_seconds=600) == 1
    settings.CALL_COST_PER_CALL = 0
    settings.CALL_COST_PER_STARTED_MINUTE = 1
    assert credits.call_cost(duration_seconds=90) == 2


# --- Reserve and settle ------------------------------------------------------


@pytest.mark.django_db
def test_credits_reserve__takes_the_amount_only_if_covered():
    account = AccountFactory(credits=5)
    assert credits.credits_reserve(account_id=account.pk, amount=3, job_pk=1, key="a")
    assert balance(account) == 2
    assert not credits.credits_reserve(
        account_id=account.pk, amount=3, job_pk=2, key="b"
    )
    assert balance(account) == 2
    entry = CreditEntry.objects.get(kind="reserve")
    assert (entry.amount, entry.balance_after, entry.job_pk) == (-3, 2, 1)


@pytest.mark.django_db
def test_credits_reserve__is_idempotent_per_claim():
    account = AccountFactory(credits=10)
    for _ in range(2):
        assert credits.credits_reserve(
            account_id=account.pk, amount=3, job_pk=7, key="k"
        )
    assert balance(account) == 7


@pytest.mark.django_db
def test_credits_settle__refunds_the_unused_part():
    account = AccountFactory(credits=10)
    credits.credits_reserve(account_id=account.pk, amount=3, job_pk=1, key="k")
    moved = credits.credits_settle(account_id=account.pk, job_pk=1, key="k", cost=1)
    assert moved == 2
    assert balance(account) == 9


@pytest.mark.django_db
def test_credits_settle__charges_extra_minutes_but_never_below_zero():
    account = AccountFactory(credits=5)
    credits.credits_reserve(account_id=account.pk, amount=3, job_pk=1, key="k")
    # A 3-minute call costs 7: 4 more than reserved, 2 are left.
    moved = credits.credits_settle(account_id=account.pk, job_pk=1, key="k", cost=7)
    assert moved == -2
    assert balance(account) == 0
    settle = CreditEntry.objects.get(kind="settle")
    assert "shortfall 2" in settle.note


@pytest.mark.django_db
def test_credits_settle__is_idempotent_per_claim():
    account = AccountFactory(credits=10)
    credits.credits_reserve(account_id=account.pk, amount=3, job_pk=1, key="k")
    credits.credits_settle(account_id=account.pk, job_pk=1, key="k", cost=1)
    assert (
        credits.credits_settle(account_id=account.pk, job_pk=1, key="k", cost=1) == 0
    )
    assert balance(account) == 9


@pytest.mark.django_db
def test_credits_reserve__refused_by_the_balance_check_is_a_failure(monkeypatch):
    """Were the statement's own balance condition ever lost, the CHECK on the
    balance refuses the reservation, and that must read as a failure: a call
    would otherwise be placed without funds."""
    unguarded = credits._RESERVE_SQL.replace(" AND credits >= %(amount)s", "")
    assert unguarded != credits._RESERVE_SQL
    monkeypatch.setattr(credits, "_RESERVE_SQL", unguarded)
    account = AccountFactory(credits=2)

    assert not credits.credits_reserve(
        account_id=account.pk, amount=3, job_pk=1, key="k"
    )
    assert balance(account) == 2
    assert not CreditEntry.objects.exists()


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_credits_reserve__a_concurrent_reserve_of_the_same_claim_is_a_success():
    """Two reserves of one claim: the second waits on the ledger's unique
    index, loses, and answers True (the claim is reserved) without taking the
    credits twice."""
    account = AccountFactory(credits=10)
    second: list[bool] = []

    def reserve_again() -> None:
        try:
            second.append(
                credits.credits_reserve(
                    account_id=account.pk, amount=3, job_pk=7, key="k"
                )
            )
        finally:
            connection.close()

    with transaction.atomic():
        assert credits.credits_reserve(
            account_id=account.pk, amount=3, job_pk=7, key="k"
        )
        other = threading.Thread(target=reserve_again)
        other.start()
        wait_for_lock_wait()  # the second reserve waits for this transaction
    other.join(timeout=30)

    assert second == [True]
    assert balance(account) == 7
    assert CreditEntry.objects.filter(kind="reserve").count() == 1


def wait_for_lock_wait(timeout: float = 30) -> None:
    """Wait until another session of this database waits for a lock."""
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            # Inside a transaction the statistics views are read once, unless
            # their snapshot is cleared.
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return
            time.sleep(0.01)
    raise AssertionError("no session waited for a lock")


@pytest.mark.django_db(transaction=True)
def test_credits_reserve__concurrent_reservations_never_overspend():
    threads_n = 12
    account = AccountFactory(credits=20)  # room for 6 reservations of 3
    start = threading.Barrier(threads_n)
    results: list[bool] = []

    def reserve(i):
        try:
            start.wait(timeout=30)
            for j in range(3):
                results.append(
                    credits.credits_reserve(
                        account_id=account.pk, amount=3, job_pk=i * 10 + j, key="k"
                    )
                )
        finally:
            connection.close()

    threads = [threading.Thread(target=reserve, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert results.count(True) == 6
    assert balance(account) == 2
    assert CreditEntry.objects.filter(kind="reserve").count() == 6


# --- Running out -------------------------------------------------------------


@pytest.mark.django_db
def test_account_suspend_for_credits__pauses_batches_and_suspends_jobs():
    account = AccountFactory(credits=2)
    active = BatchFactory(account=account)
    manual = BatchFactory(account=account)
    batch_services.batch_pause(batch=manual, actor=ADMIN, reason="script review")
    other_account_batch = BatchFactory()
    JobFactory(batch=active, status=JobStatus.PENDING)
    JobFactory(batch=active, status=JobStatus.SCHEDULED, scheduled_at=timezone.now())
    JobFactory(batch=active, status=JobStatus.IN_PROGRESS)
    JobFactory(batch=active, status=JobStatus.COMPLETED)
    JobFactory(batch=manual, status=JobStatus.PENDING)
    JobFactory(batch=None, account=account, status=JobStatus.PENDING)
    JobFactory(batch=other_account_batch, status=JobStatus.PENDING)

    result = credits.account_suspend_for_credits(account_id=account.pk)

    assert result.paused_batches == [active.batch_id]
    assert result.suspended_jobs == 4
    active.refresh_from_db()
    assert active.is_active is False
    assert (active.pause_source, active.pause_reason) == ("system", "no credits")
    event = active.events.get(action=BatchEvent.Action.PAUSED)
    assert (event.source, event.reason) == (Source.SYSTEM, "no credits")
    manual.refresh_from_db()
    assert (manual.pause_source, manual.pause_reason) == ("admin", "script review")
    assert statuses(batch=active) == [
        "completed",
        "in_progress",
        "suspended",
        "suspended",
    ]
    assert statuses(batch=manual) == ["suspended"]
    assert statuses(batch=None) == ["suspended"]
    assert statuses(batch=other_account_batch) == ["pending"]


@pytest.mark.django_db
def test_account_suspend_for_credits__does_nothing_when_the_account_can_pay():
    account = AccountFactory(credits=3)
    batch = BatchFactory(account=account)
    JobFactory(batch=batch)
    result = credits.account_suspend_for_credits(account_id=account.pk)
    assert result == credits.Suspension()
    assert statuses(batch=batch) == ["pending"]


@pytest.mark.django_db(transaction=True)
def test_account_suspend_for_credits__fires_batch_auto_paused_webhook(receiver):
    account = AccountFactory(credits=0)
    batch = BatchFactory(account=account)
    WebhookEndpoint.objects.create(account=account, url=receiver.url)

    credits.account_suspend_for_credits(account_id=account.pk)

    bodies = [json.loads(r.body) for r in receiver.requests]
    assert [b["type"] for b in bodies] == ["batch.auto_paused"]
    assert bodies[0]["data"]["batch"]["batch_id"] == batch.batch_id
    assert bodies[0]["data"]["batch"]["pause_reason"] == "no credits"


# --- Topping up ---------------------------------------------------------------


@pytest.mark.django_db
def test_credits_add__resumes_only_what_the_system_paused_and_restores_jobs():
    account = AccountFactory(credits=0)
    auto = BatchFactory(account=account)
    manual = BatchFactory(account=account)
    batch_services.batch_pause(batch=manual, actor=ADMIN, reason="script review")
    JobFactory(batch=auto, status=JobStatus.PENDING)
    later = timezone.now() + timedelta(hours=2)
    JobFactory(batch=auto, status=JobStatus.SCHEDULED, scheduled_at=later)
    JobFactory(batch=manual, status=JobStatus.PENDING)
    credits.account_suspend_for_credits(account_id=account.pk)
    assert statuses(account=account) == ["suspended"] * 3

    result = credits.credits_add(account=account, amount=50, actor=ADMIN, note="PO 7")

    assert result.balance == 50
    assert result.resumed_batches == [auto.batch_id]
    assert result.unsuspended_jobs == 3
    assert account.credits == 50
    auto.refresh_from_db()
    manual.refresh_from_db()
    assert auto.is_active is True
    assert auto.events.filter(action=BatchEvent.Action.RESUMED).get().source == "admin"
    assert manual.is_active is False  # a person paused it: it stays paused
    assert statuses(batch=auto) == ["pending", "scheduled"]
    assert statuses(batch=manual) == ["pending"]
    entry = CreditEntry.objects.get(kind="add")
    assert (entry.amount, entry.balance_after, entry.source) == (50, 50, "admin")
    assert entry.actor_label == "ops"
    assert entry.note == "PO 7"


@pytest.mark.django_db
def test_credits_add__not_enough_to_pay_a_call_keeps_everything_suspended():
    account = AccountFactory(credits=0)
    batch = BatchFactory(account=account)
    JobFactory(batch=batch)
    credits.account_suspend_for_credits(account_id=account.pk)

    result = credits.credits_add(account=account, amount=2, actor=ADMIN)

    assert result.balance == 2
    assert result.resumed_batches == []
    batch.refresh_from_db()
    assert batch.is_active is False
    assert statuses(batch=batch) == ["suspended"]


@pytest.mark.django_db
@pytest.mark.parametrize("amount", [0, -5, 1.5, True, "10"])
def test_credits_add__rejects_non_positive_or_non_integer_amounts(amount):
    account = AccountFactory(credits=1)
    with pytest.raises(credits.InvalidCreditAmountError):
        credits.credits_add(account=account, amount=amount, actor=ADMIN)
    assert balance(account) == 1


@pytest.mark.django_db
def test_accounts_reconcile_credits__restores_accounts_that_can_pay_again():
    account = AccountFactory(credits=0)
    batch = BatchFactory(account=account)
    JobFactory(batch=batch)
    credits.account_suspend_for_credits(account_id=account.pk)
    # Refunds of settled calls brought the balance back without a top-up.
    Account.objects.filter(pk=account.pk).update(credits=10)
    poor = AccountFactory(credits=0)
    poor_batch = BatchFactory(account=poor)
    JobFactory(batch=poor_batch)
    credits.account_suspend_for_credits(account_id=poor.pk)

    assert credits.accounts_reconcile_credits() == 1

    batch.refresh_from_db()
    assert batch.is_active is True
    assert statuses(batch=batch) == ["pending"]
    assert statuses(batch=poor_batch) == ["suspended"]


# --- The billing seam and orphaned reservations ---------------------------------


@pytest.mark.django_db
def test_reserve_call__suspends_the_account_when_it_cannot_pay():
    account = AccountFactory(credits=4)
    batch = BatchFactory(account=account)
    first, second, waiting = (
        JobFactory(batch=batch, status=JobStatus.IN_PROGRESS, claimed_at=timezone.now())
        for _ in range(3)
    )
    Job.objects.filter(pk=waiting.pk).update(status=JobStatus.PENDING)

    assert billing.reserve_call(first) is True
    assert balance(account) == 1
    assert billing.reserve_call(second) is False

    batch.refresh_from_db()
    assert batch.pause_reason == "no credits"
    assert Job.objects.get(pk=waiting.pk).status == JobStatus.SUSPENDED
    billing.settle_call(first, duration_seconds=30, outcome="answered")
    assert balance(account) == 1  # 3 reserved, 3 charged


@pytest.mark.django_db
def test_reserve_calls__a_claim_the_balance_only_partly_covers():
    """Reserve is 3; 7 credits pay for two of the claim's three calls: those
    two are dialled, the third is suspended and the account's campaign
    pauses, as with one reservation at a time."""
    account = AccountFactory(credits=7)
    batch = BatchFactory(account=account)
    now = timezone.now()
    claim = [
        JobFactory(
            batch=batch, status=JobStatus.IN_PROGRESS, claimed_by="w", claimed_at=now
        )
        for _ in range(3)
    ]

    payable = billing.reserve_calls(claim, worker_id="w")

    assert payable == claim[:2]
    assert balance(account) == 1
    assert Job.objects.get(pk=claim[2].pk).status == JobStatus.SUSPENDED
    batch.refresh_from_db()
    assert batch.pause_reason == "no credits"
    reserved = CreditEntry.objects.filter(kind="reserve")
    assert sorted(reserved.values_list("job_pk", flat=True)) == [
        claim[0].pk,
        claim[1].pk,
    ]


@pytest.mark.postgres_only
@pytest.mark.django_db
def test_reserve_calls__a_covered_claim_is_one_statement():
    from django.test.utils import CaptureQueriesContext

    account = AccountFactory(credits=100)
    now = timezone.now()
    claim = [
        JobFactory(
            account=account,
            batch=None,
            status=JobStatus.IN_PROGRESS,
            claimed_by="w",
            claimed_at=now,
        )
        for _ in range(5)
    ]
    with CaptureQueriesContext(connection) as queries:
        assert billing.reserve_calls(claim, worker_id="w") == claim
    assert len(statements_sent(queries)) == 1
    assert balance(account) == 100 - 5 * 3


@pytest.mark.django_db
def test_credits_settle_orphans__refunds_undialled_and_keeps_lost_calls():
    account = AccountFactory(credits=100)
    claimed = timezone.now() - timedelta(hours=3)
    undialled = JobFactory(account=account, batch=None, status=JobStatus.PENDING)
    lost = JobFactory(
        account=account,
        batch=None,
        status=JobStatus.FAILED,
        attempt_log=[
            {
                "outcome": "worker_lost",
                "started_at": (claimed + timedelta(seconds=1)).isoformat(),
            }
        ],
    )
    logged = JobFactory(
        account=account,
        batch=None,
        status=JobStatus.COMPLETED,
        attempt_log=[
            {
                "outcome": "answered",
                "dialed_at": (claimed + timedelta(seconds=1)).isoformat(),
                "duration_seconds": 130,
            }
        ],
    )
    key = credits.claim_key(claimed)
    for job in (undialled, lost, logged):
        credits.credits_reserve(
            account_id=account.pk, amount=3, job_pk=job.pk, key=key
        )
    CreditEntry.objects.update(created_at=claimed)
    assert balance(account) == 91

    assert credits.credits_settle_orphans() == 3
    assert credits.credits_settle_orphans() == 0

    # undialled: +3 back; lost: reservation kept; logged: 1 + 3 minutes * 2 = 7.
    assert balance(account) == 91 + 3 + 0 - 4


# --- Real workers against a small balance ----------------------------------------


def _run_workers(n: int, *, concurrency: int) -> list[BaseException]:
    from jobs.dialers.simulated import SimulatedDialer
    from jobs.worker import CallWorker

    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            CallWorker(
                dialer=SimulatedDialer(
                    call_seconds=(0.01, 0.05), outcomes={"answered": 1.0}, seed=i
                ),
                worker_id=f"worker-{i}",
                concurrency=concurrency,
                burst=True,
                listen=False,
                poll_seconds=0.05,
                shutdown_timeout=5,
            ).run()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return errors


@pytest.mark.django_db(transaction=True)
def test_workers__concurrent_calls_never_overspend_then_resume_after_top_up(
    settings,
):
    settings.CALL_COST_PER_CALL = 1
    settings.CALL_COST_PER_STARTED_MINUTE = 1  # every short call costs 2
    account = AccountFactory(credits=11)
    batches = [BatchFactory(account=account) for _ in range(2)]
    for batch in batches:
        for _ in range(15):
            JobFactory(batch=batch)
    JobFactory.create_batch(4, batch=None, account=account)

    errors = _run_workers(4, concurrency=3)

    assert errors == []
    # Never overspent: every call placed had its price reserved before it was
    # dialled, and the credits spent are exactly the price of the calls made.
    # (The balance itself cannot go below zero, a CHECK forbids it; a call
    # placed on a reservation that failed would not show there.)
    calls = [(job.pk, e) for job in Job.objects.all() for e in job.attempt_log]
    reserved = CreditEntry.objects.filter(kind="reserve").values_list(
        "job_pk", flat=True
    )
    assert {pk for pk, _ in calls} <= set(reserved)
    spent = sum(
        credits.call_cost(duration_seconds=e["duration_seconds"], outcome=e["outcome"])
        for _, e in calls
    )
    assert spent == 11 - balance(account)
    completed = Job.objects.filter(status=JobStatus.COMPLETED).count()
    # At most five calls fit in 11 credits at 2 each, and each one is paid
    # for. Fewer when the pause for credits commits between a job's
    # reservation and its dial mark: the pause is exact, so that job is
    # released (back to pending in its paused batch) and its reservation
    # refunded. Which jobs that hits depends on the threads' timing.
    assert 1 <= completed <= 5
    assert balance(account) == 11 - 2 * completed
    ledger = list(
        CreditEntry.objects.order_by("id").values_list("balance_after", flat=True)
    )
    assert min(ledger) >= 0
    suspended = Job.objects.filter(status=JobStatus.SUSPENDED).count()
    released = Job.objects.filter(
        status=JobStatus.PENDING, batch__is_active=False
    ).count()
    assert suspended + released == 34 - completed
    assert not Job.objects.filter(status=JobStatus.IN_PROGRESS).exists()
    for batch in batches:
        batch.refresh_from_db()
        assert (batch.is_active, batch.pause_source, batch.pause_reason) == (
            False,
            "system",
            "no credits",
        )

    result = credits.credits_add(account=account, amount=1000, actor=ADMIN)
    assert sorted(result.resumed_batches) == sorted(b.batch_id for b in batches)
    assert result.unsuspended_jobs == suspended

    assert _run_workers(4, concurrency=3) == []

    assert Job.objects.filter(status=JobStatus.COMPLETED).count() == 34
    assert balance(account) == 11 + 1000 - 34 * 2
    for batch in batches:
        batch.refresh_from_db()
        assert batch.state == Batch.State.COMPLETED
