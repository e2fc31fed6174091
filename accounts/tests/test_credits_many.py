"""Reserving and settling many claims in one statement (the worker's rounds)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from accounts import credits
from accounts.credits import Settlement
from accounts.models import Account, CreditEntry
from accounts.tests.factories import AccountFactory
from callcenter.tests.queries import statements_sent


def balance(account) -> int:
    return Account.objects.values_list("credits", flat=True).get(pk=account.pk)


def entries(kind: str) -> list[tuple[int | None, int, int, str]]:
    return list(
        CreditEntry.objects.filter(kind=kind)
        .order_by("id")
        .values_list("job_pk", "amount", "balance_after", "note")
    )


@pytest.mark.postgres_only
@pytest.mark.django_db
def test_credits_reserve_many__one_statement_and_a_ledger_entry_per_claim():
    account = AccountFactory(credits=20)
    claims = [(11, "k"), (12, "k"), (13, "k")]
    with CaptureQueriesContext(connection) as queries:
        reserved = credits.credits_reserve_many(
            account_id=account.pk, amount=3, claims=claims
        )
    assert reserved == {11, 12, 13}
    assert len(statements_sent(queries)) == 1
    assert balance(account) == 11
    # Each entry's balance is the balance right after it, in claim order.
    assert [(j, a, b) for j, a, b, _ in entries("reserve")] == [
        (11, -3, 17),
        (12, -3, 14),
        (13, -3, 11),
    ]


@pytest.mark.postgres_only
@pytest.mark.django_db
def test_credits_reserve_many__all_or_nothing_when_the_balance_is_short():
    # The statement's own condition refuses the claim, not the CHECK on the
    # balance, which would otherwise do it for any shortfall. (The test's
    # transaction rolls the DDL back.)
    with connection.cursor() as cursor:
        cursor.execute(
            "ALTER TABLE accounts_account DROP CONSTRAINT account_credits_not_negative"
        )
    account = AccountFactory(credits=8)  # two reservations of 3, not three
    reserved = credits.credits_reserve_many(
        account_id=account.pk, amount=3, claims=[(1, "k"), (2, "k"), (3, "k")]
    )
    assert reserved == set()
    assert balance(account) == 8
    assert not CreditEntry.objects.exists()


@pytest.mark.postgres_only
@pytest.mark.django_db
def test_credits_reserve_many__skips_claims_reserved_before():
    account = AccountFactory(credits=20)
    credits.credits_reserve(account_id=account.pk, amount=3, job_pk=1, key="k")
    reserved = credits.credits_reserve_many(
        account_id=account.pk, amount=3, claims=[(1, "k"), (2, "k")]
    )
    assert reserved == {2}
    assert balance(account) == 14
    assert [j for j, *_ in entries("reserve")] == [1, 2]


def synchronous_commit() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("statement", ["reserve_many", "settle_many"])
def test_credits_many__commit_without_waiting_for_the_flush_only_themselves(
    statement,
):
    account = AccountFactory(credits=20)

    def run() -> None:
        if statement == "reserve_many":
            credits.credits_reserve_many(
                account_id=account.pk, amount=3, claims=[(1, "k")]
            )
        else:
            credits.credits_settle_many(
                account_id=account.pk, settlements=[Settlement(1, "k", 1)]
            )

    # The setting is made inside the statement, for its own transaction: seen
    # from a transaction around it, it is off until that transaction ends...
    with transaction.atomic():
        assert synchronous_commit() == "on"
        run()
        assert synchronous_commit() == "off"
    # ...and in autocommit, as the worker runs it, it ends with the statement.
    assert synchronous_commit() == "on"
    run()
    assert synchronous_commit() == "on"
    assert CreditEntry.objects.filter(kind=statement.split("_")[0]).count() == 1


@pytest.mark.postgres_only
@pytest.mark.django_db
def test_credits_settle_many__refunds_each_claim_in_one_statement():
    account = AccountFactory(credits=20)
    credits.credits_reserve_many(
        account_id=account.pk, amount=3, claims=[(1, "k"), (2, "k")]
    )
    with CaptureQueriesContext(connection) as queries:
        credits.credits_settle_many(
            account_id=account.pk,
            settlements=[
                Settlement(job_pk=1, key="k", cost=1, note="answered, 5s"),
                Settlement(job_pk=2, key="k", cost=5),  # 2 more than reserved
            ],
        )
    assert len(statements_sent(queries)) == 1
    assert balance(account) == 20 - 1 - 5
    assert entries("settle") == [
        (1, 2, 16, "answered, 5s"),
        (2, -2, 14, "cost 5, reserved 3"),
    ]


@pytest.mark.django_db
def test_credits_settle_many__is_idempotent_per_claim():
    account = AccountFactory(credits=20)
    credits.credits_reserve_many(
        account_id=account.pk, amount=3, claims=[(1, "k"), (2, "k")]
    )
    settlements = [Settlement(1, "k", 1), Settlement(2, "k", 1)]
    credits.credits_settle_many(account_id=account.pk, settlements=settlements)
    credits.credits_settle_many(account_id=account.pk, settlements=settlements)
    assert balance(account) == 18
    assert len(entries("settle")) == 2


@pytest.mark.postgres_only
@pytest.mark.django_db
def test_credits_settle_many__a_charge_that_must_be_capped_takes_the_careful_path():
    account = AccountFactory(credits=7)
    credits.credits_reserve_many(
        account_id=account.pk, amount=3, claims=[(1, "k"), (2, "k")]
    )
    assert balance(account) == 1
    # Job 1 costs 6 (3 more than reserved, only 1 left); job 2 refunds 2.
    credits.credits_settle_many(
        account_id=account.pk,
        settlements=[Settlement(1, "k", 6), Settlement(2, "k", 1)],
    )
    assert balance(account) == 2  # 1 - 1 (capped) + 2
    moved = [(j, a, b) for j, a, b, _ in entries("settle")]
    assert moved == [(1, -1, 0), (2, 2, 2)]
    assert "shortfall 2" in CreditEntry.objects.get(job_pk=1, kind="settle").note


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_credits_reserve_many__concurrent_workers_never_overspend():
    account = AccountFactory(credits=30)  # room for 10 reservations of 3
    barrier = threading.Barrier(6)
    won: list[set[int]] = []
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            barrier.wait(timeout=10)
            won.append(
                credits.credits_reserve_many(
                    account_id=account.pk,
                    amount=3,
                    claims=[(n * 10 + i, "k") for i in range(4)],
                )
            )
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    # Claims of 4: two fit in 30 credits, and never a part of a third.
    assert sorted(len(w) for w in won) == [0, 0, 0, 0, 4, 4]
    assert balance(account) == 30 - 8 * 3
    assert CreditEntry.objects.filter(kind="reserve").count() == 8
