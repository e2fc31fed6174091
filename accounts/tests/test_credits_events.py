"""accounts announces running out of credits and being able to pay again
(accounts.signals); batches and jobs act on it. What batches do happens in the
transaction that holds the account row: a failure there undoes it all."""

from __future__ import annotations

import pytest

from accounts import credits, signals
from accounts.models import Account
from accounts.tests.factories import AccountFactory
from batches.models import BatchEvent
from batches.tests.factories import BatchFactory
from callcenter.actor import Actor, Source
from jobs.models import JobStatus
from jobs.tests.factories import JobFactory

ADMIN = Actor(source=Source.ADMIN, label="ops")


class Boom(Exception):
    pass


def boom(sender, **kwargs):
    raise Boom


@pytest.fixture(autouse=True)
def _pricing(settings):
    settings.CALL_COST_PER_CALL = 1
    settings.CALL_COST_PER_STARTED_MINUTE = 2
    settings.CALL_RESERVE_MINUTES = 1


@pytest.fixture
def failing(request):
    """Connect ``boom`` after the apps' own receivers of a signal."""
    connected = []

    def connect(signal):
        signal.connect(boom, dispatch_uid="test.boom")
        connected.append(signal)

    yield connect
    for signal in connected:
        signal.disconnect(dispatch_uid="test.boom")


def test_the_apps_above_accounts_subscribe_in_their_app_configs():
    assert signals.credits_ran_out.has_listeners(Account)
    assert signals.credits_ran_out_committed.has_listeners(Account)
    assert signals.credits_available.has_listeners(Account)
    assert signals.credits_available_committed.has_listeners(Account)
    assert signals.credits_held_accounts.has_listeners(Account)


@pytest.mark.django_db(transaction=True)
def test_credits_ran_out__the_pause_is_in_the_account_locks_transaction(failing):
    account = AccountFactory(credits=0)
    batch = BatchFactory(account=account)
    job = JobFactory(batch=batch, status=JobStatus.PENDING)
    failing(signals.credits_ran_out)

    with pytest.raises(Boom):
        credits.account_suspend_for_credits(account_id=account.pk)

    batch.refresh_from_db()
    assert batch.is_active is True  # the pause rolled back with the transaction
    assert not batch.events.filter(action=BatchEvent.Action.PAUSED).exists()
    job.refresh_from_db()
    assert job.status == JobStatus.PENDING  # the jobs' sweep never started


@pytest.mark.django_db(transaction=True)
def test_credits_available__the_resume_is_in_the_top_ups_transaction(failing):
    account = AccountFactory(credits=0)
    batch = BatchFactory(account=account)
    job = JobFactory(batch=batch, status=JobStatus.PENDING)
    credits.account_suspend_for_credits(account_id=account.pk)
    failing(signals.credits_available)

    with pytest.raises(Boom):
        credits.credits_add(account=account, amount=10, actor=ADMIN)

    assert Account.objects.get(pk=account.pk).credits == 0  # not added either
    batch.refresh_from_db()
    assert (batch.is_active, batch.pause_reason) == (False, "no credits")
    job.refresh_from_db()
    assert job.status == JobStatus.SUSPENDED


@pytest.mark.django_db
def test_credits_held_accounts__jobs_and_batches_each_name_theirs():
    only_jobs = AccountFactory(credits=0)
    JobFactory(batch=None, account=only_jobs, status=JobStatus.SUSPENDED)
    only_batch = AccountFactory(credits=0)
    BatchFactory(account=only_batch)  # with no jobs
    credits.account_suspend_for_credits(account_id=only_batch.pk)
    BatchFactory(account=AccountFactory(credits=0))  # nothing held

    held = {
        receiver.__module__: answer
        for receiver, answer in signals.credits_held_accounts.send(sender=Account)
    }

    assert held == {
        "jobs.receivers": {only_jobs.pk},
        "batches.receivers": {only_batch.pk},
    }
