"""Further minutes of a long call: reserved one by one while it runs
(credits_extend), and counted in by every way a claim is settled."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts import credits
from accounts.models import Account, CreditEntry
from accounts.tests.factories import AccountFactory
from jobs.models import JobStatus
from jobs.tests.factories import JobFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _pricing(settings):
    settings.CALL_COST_PER_CALL = 1
    settings.CALL_COST_PER_STARTED_MINUTE = 2
    settings.CALL_RESERVE_MINUTES = 1


def balance(account) -> int:
    return Account.objects.values_list("credits", flat=True).get(pk=account.pk)


def reserved_call(account, **fields):
    job = JobFactory(account=account, batch=None, **fields)
    key = credits.claim_key(timezone.now() - timedelta(hours=3))
    assert credits.credits_reserve(
        account_id=account.pk, amount=3, job_pk=job.pk, key=key
    )
    return job, key


def test_credits_extend__takes_a_minute_only_if_the_balance_covers_it():
    account = AccountFactory(credits=3 + 2 + 1)
    job, key = reserved_call(account)

    extend = credits.credits_extend
    assert extend(account_id=account.pk, job_pk=job.pk, key=key, minute=2)
    assert extend(account_id=account.pk, job_pk=job.pk, key=key, minute=2)  # again
    assert not extend(account_id=account.pk, job_pk=job.pk, key=key, minute=3)

    assert balance(account) == 1
    [entry] = CreditEntry.objects.filter(kind=CreditEntry.Kind.EXTEND)
    assert (entry.amount, entry.claim_key, entry.note) == (-2, f"{key}#2", "minute 2")


def test_credits_settle__refunds_what_the_further_minutes_reserved_too():
    account = AccountFactory(credits=100)
    job, key = reserved_call(account)
    for minute in (2, 3):
        credits.credits_extend(
            account_id=account.pk, job_pk=job.pk, key=key, minute=minute
        )
    assert balance(account) == 100 - 3 - 4

    # Ended within its second minute: 1 + 2 x 2 = 5 of the 7 reserved.
    moved = credits.credits_settle(
        account_id=account.pk, job_pk=job.pk, key=key, cost=5
    )

    assert moved == 2
    assert balance(account) == 95


def test_credits_settle_orphans__keeps_every_minute_reserved_for_a_lost_call():
    account = AccountFactory(credits=100)
    job, key = reserved_call(
        account,
        status=JobStatus.FAILED,
        attempt_log=[
            {
                "outcome": "worker_lost",
                "started_at": (timezone.now() - timedelta(hours=2)).isoformat(),
            }
        ],
    )
    credits.credits_extend(account_id=account.pk, job_pk=job.pk, key=key, minute=2)
    CreditEntry.objects.update(created_at=timezone.now() - timedelta(hours=3))

    assert credits.credits_settle_orphans() == 1

    assert balance(account) == 100 - 3 - 2
    settle = CreditEntry.objects.get(kind=CreditEntry.Kind.SETTLE)
    assert settle.amount == 0
