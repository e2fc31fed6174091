"""The worker's hot statements run prepared, once planned per connection."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import override_settings

from accounts.models import Account, CreditEntry
from accounts.tests.factories import AccountFactory
from batches.services import batch_pause
from batches.tests.factories import BatchFactory
from callcenter.actor import Actor
from callcenter.prepared import fetch_prepared
from jobs import billing, lifecycle
from jobs.claim import claim_jobs
from jobs.dialers.base import CallResult, Outcome
from jobs.models import JobStatus
from jobs.tests.factories import JobFactory

pytestmark = pytest.mark.django_db(transaction=True)

HOT = {
    "callcenter_claim_2",
    "callcenter_reserve_many",
    "callcenter_record_successes",
    "callcenter_settle_many",
}


def prepared_names() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements")
        return {name for (name,) in cursor.fetchall()}


def one_round(worker_id: str) -> list[str]:
    """What the worker does for a claim of two calls that end at once."""
    jobs = claim_jobs(worker_id=worker_id, limit=2)
    payable = billing.reserve_calls(jobs, worker_id=worker_id)
    dialed = lifecycle.mark_dialed(jobs=payable, worker_id=worker_id)
    answered = CallResult(outcome=Outcome.ANSWERED, duration_seconds=1)
    ended = []
    for job in dialed:
        assert job.dialed_at is not None
        ended.append(lifecycle.CallEnd(job.pk, job.dialed_at, "", answered))
    statuses = lifecycle.record_calls(worker_id=worker_id, ended=ended)
    billing.settle_calls([(j, 1.0, answered.outcome) for j in dialed])
    return sorted(statuses.values())


def round_outcome(*, prepared):
    """One worker round in a new session, with the hot statements prepared or
    not: the hot statements the session then holds, and what the round did to
    the jobs and the ledger."""
    connection.close()  # a new session: nothing is prepared in it yet
    with override_settings(DATABASE_PREPARED_STATEMENTS=prepared):
        account = AccountFactory(credits=20)
        batch = BatchFactory(account=account)
        JobFactory.create_batch(3, batch=batch)  # one left pending: batch stays open
        statuses = one_round("w-1")
        names = prepared_names()
    batch_pause(batch=batch, actor=Actor.system("tests"))  # out of the next round
    ledger = CreditEntry.objects.filter(account_id=account.pk).order_by("id")
    balance = Account.objects.get(pk=account.pk).credits
    return HOT & names, [
        statuses,
        [(e.kind, e.amount, e.balance_after, e.note) for e in ledger],
        balance,
    ]


def test_worker_round__same_outcome_prepared_or_not():
    held_unprepared, unprepared = round_outcome(prepared=False)
    held_prepared, prepared = round_outcome(prepared=True)

    assert held_unprepared == set()
    assert held_prepared == HOT
    assert prepared == unprepared
    statuses, ledger, _balance = prepared
    assert statuses == [JobStatus.COMPLETED, JobStatus.COMPLETED]
    assert sorted(entry[0] for entry in ledger) == [
        "reserve",
        "reserve",
        "settle",
        "settle",
    ]


def test_worker_round__prepares_again_after_discard_all(settings):
    settings.DATABASE_PREPARED_STATEMENTS = True
    batch = JobFactory().batch
    JobFactory.create_batch(4, batch=batch)
    one_round("w-1")
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")  # what a pooler's DISCARD ALL does

    assert one_round("w-1") == [JobStatus.COMPLETED, JobStatus.COMPLETED]
    assert prepared_names() >= HOT


def test_fetch_prepared__numbers_each_named_parameter_once(settings):
    settings.DATABASE_PREPARED_STATEMENTS = True
    rows = fetch_prepared(
        "callcenter_test_params",
        "SELECT %(a)s::int + %(b)s::int, %(a)s::int * 10",
        {"a": 2, "b": 5},
    )
    assert rows == [(7, 20)]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT parameter_types::text FROM pg_prepared_statements"
            " WHERE name = 'callcenter_test_params'"
        )
        assert cursor.fetchone()[0] == "{integer,integer}"


def test_fetch_prepared__trusts_the_session_over_its_own_memory(settings):
    """A session that already holds the statement (whatever the process
    remembers) is not asked to prepare it twice."""
    settings.DATABASE_PREPARED_STATEMENTS = True
    fetch_prepared("callcenter_test_known", "SELECT %(a)s::int", {"a": 1})
    del connection.connection._callcenter_prepared

    assert fetch_prepared("callcenter_test_known", "SELECT %(a)s::int", {"a": 2}) == [
        (2,)
    ]
