"""The caps, one step at a time: what the dial mark defers and why, the
concurrency caps in the claim, and the circuit breaker."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db.models import Sum

from accounts.models import CreditEntry
from accounts.services import account_set_dialing_rules
from accounts.tests.factories import AccountFactory
from batches.models import BatchEvent
from batches.tests.factories import BatchFactory
from callcenter.actor import Actor
from jobs import billing, breaker, caps, lifecycle
from jobs.claim import claim_jobs
from jobs.dialers.base import CallResult, Outcome
from jobs.models import CallAttempt, Job, JobStatus
from jobs.tests.factories import JobFactory
from jobs.tests.test_worker_process import start_worker  # noqa: F401 (fixture)
from webhooks.models import WebhookDelivery, WebhookEndpoint

# The claim's caps are a PL/pgSQL function; the gate's deferral times use the
# database clock.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres_only]

NUMBER = "+14155550123"


def dial(worker: str, limit: int = 5) -> list[Job]:
    """A worker's claim, reservation and dial mark."""
    jobs = claim_jobs(worker_id=worker, token=worker, limit=limit)
    payable = billing.reserve_calls(jobs, worker_id=worker, token=worker)
    return lifecycle.mark_dialed(jobs=payable, worker_id=worker, token=worker)


def end(worker: str, jobs: list[Job], outcome: str = Outcome.ANSWERED) -> None:
    lifecycle.record_calls(
        worker_id=worker,
        token=worker,
        ended=[
            lifecycle.CallEnd(
                j.pk,
                j.dialed_at,
                "",
                CallResult(outcome=outcome),
                attempt_token=j.attempt_token,
            )
            for j in jobs
            if j.dialed_at is not None
        ],
    )


def charged(job: Job) -> int:
    return -(
        CreditEntry.objects.filter(job_pk=job.pk).aggregate(n=Sum("amount"))["n"] or 0
    )


def test_mark_dialed__a_number_in_a_call_elsewhere_is_deferred_not_dialled():
    # The same number in two accounts: one call at a time, whoever calls.
    first = JobFactory(
        phone_number=NUMBER, batch=BatchFactory(account=AccountFactory(credits=50))
    )
    [in_call] = dial("w-1")
    assert in_call.pk == first.pk
    second = JobFactory(
        phone_number=NUMBER, batch=BatchFactory(account=AccountFactory(credits=50))
    )

    assert dial("w-2") == []

    second.refresh_from_db()
    assert second.status == JobStatus.SCHEDULED
    assert second.attempts == 0
    assert second.claimed_by == ""
    assert second.scheduled_at > in_call.dialed_at
    assert charged(second) == 0  # the reservation was given back
    assert caps.concurrency_caps_reached(second) == ["number"]
    [reason] = caps.explain(second)
    assert (reason.code, reason.detail) == (
        "concurrency_cap",
        "The number is in another call.",
    )


def test_mark_dialed__two_jobs_of_one_number_in_one_claim__one_is_dialled():
    account = AccountFactory(credits=50)
    a = JobFactory(phone_number=NUMBER, batch=BatchFactory(account=account))
    b = JobFactory(phone_number=NUMBER, batch=BatchFactory(account=account))

    dialed = dial("w-1")

    assert [j.pk for j in dialed] == [min(a.pk, b.pk)]
    assert Job.objects.get(pk=max(a.pk, b.pk)).status == JobStatus.SCHEDULED


def test_mark_dialed__the_frequency_cap_defers_until_the_oldest_dial_is_24h_old():
    account = AccountFactory(credits=50)
    account_set_dialing_rules(
        account=account, actor=Actor.system("t"), max_calls_per_number_per_24h=2
    )
    dials = []
    for _ in range(2):
        JobFactory(phone_number=NUMBER, batch=BatchFactory(account=account))
        [job] = dial("w-1")
        end("w-1", [job])
        dials.append(job.dialed_at)
    third = JobFactory(phone_number=NUMBER, batch=BatchFactory(account=account))
    other_account = JobFactory(phone_number=NUMBER)  # its own count

    dialed = dial("w-1")

    assert [j.pk for j in dialed] == [other_account.pk]
    third.refresh_from_db()
    assert third.status == JobStatus.SCHEDULED
    assert third.attempts == 0
    assert third.scheduled_at == dials[0] + timedelta(hours=24)
    assert caps.frequency_cap_until(third) == dials[0] + timedelta(hours=24)
    assert caps.frequency_cap_until(other_account) is None
    # The other account's job is in a call with the number now, too.
    assert [(r.code, r.until) for r in caps.explain(third)] == [
        ("frequency_cap", dials[0] + timedelta(hours=24)),
        ("concurrency_cap", None),
    ]


def test_mark_dialed__a_dial_the_gate_refuses_is_not_counted_by_the_frequency_cap():
    account = AccountFactory(credits=50)
    staff = Actor.system("t")
    account_set_dialing_rules(
        account=account,
        actor=staff,
        allowed_countries=["GB"],
        max_calls_per_number_per_24h=1,
    )
    JobFactory(phone_number=NUMBER, batch=BatchFactory(account=account))
    assert dial("w-1") == []  # refused: the US is not allowed
    assert CallAttempt.objects.count() == 0
    account_set_dialing_rules(account=account, actor=staff, allowed_countries=["US"])
    again = JobFactory(phone_number=NUMBER, batch=BatchFactory(account=account))

    assert [j.pk for j in dial("w-1")] == [again.pk]


def test_claim__a_batch_at_its_cap_is_skipped_and_other_batches_are_claimed():
    account = AccountFactory(credits=50)
    capped = BatchFactory(account=account, priority=10, max_concurrent_calls=2)
    other = BatchFactory(account=account)
    JobFactory.create_batch(4, batch=capped)
    JobFactory.create_batch(4, batch=other)

    first = claim_jobs(worker_id="w-1", limit=5)
    second = claim_jobs(worker_id="w-2", limit=5)

    assert [j.batch_id for j in first] == [capped.pk] * 2 + [other.pk] * 3
    assert [j.batch_id for j in second] == [other.pk]
    waiting = capped.jobs.filter(status=JobStatus.PENDING).first()
    assert [(r.code, r.detail) for r in caps.explain(waiting)] == [
        ("concurrency_cap", "The batch's max_concurrent_calls calls are in progress.")
    ]


def test_claim__a_cap_of_0_stops_the_batch_and_one_off_jobs_obey_the_account_cap():
    account = AccountFactory(credits=50, max_concurrent_calls=1)
    stopped = BatchFactory(account=account, max_concurrent_calls=0)
    JobFactory(batch=stopped)
    JobFactory.create_batch(2, batch=None, account=account)
    free = JobFactory(batch=None)

    claimed = claim_jobs(worker_id="w-1", limit=5)

    assert len([j for j in claimed if j.account_id == account.pk]) == 1
    assert free.pk in {j.pk for j in claimed}
    assert stopped.jobs.get().status == JobStatus.PENDING


# --- the circuit breaker -----------------------------------------------------


def failing_batch(ratio: float, window: int = 4, jobs: int = 4) -> Any:
    batch = BatchFactory(
        account=AccountFactory(credits=100),
        breaker={"window": window, "max_failure_ratio": ratio},
    )
    JobFactory.create_batch(jobs, batch=batch)
    return batch


def test_breaker__more_than_the_ratio_failed__the_system_pauses_the_batch():
    batch = failing_batch(0.5)
    WebhookEndpoint.objects.create(account=batch.account, url="https://example.com/h")
    jobs = dial("w-1", limit=4)
    end("w-1", jobs[:1], Outcome.ANSWERED)
    end("w-1", jobs[1:3], Outcome.FAILED)
    batch.refresh_from_db()
    assert batch.is_active  # 2 of the last 4: not more than 0.5

    end("w-1", jobs[3:], Outcome.ERROR)

    batch.refresh_from_db()
    assert not batch.is_active
    assert batch.pause_source == "system"
    assert batch.pause_reason == (
        "Circuit breaker: 3 of the last 4 ended calls failed, more than the 50% "
        "allowed (max_failure_ratio 0.5)."
    )
    event = BatchEvent.objects.get(batch=batch, action=BatchEvent.Action.PAUSED)
    assert (event.source, event.actor_label) == ("system", "circuit breaker")
    assert WebhookDelivery.objects.filter(event="batch.paused").count() == 1


def test_breaker__fewer_ended_calls_than_the_window_count_against_the_window():
    batch = failing_batch(0.5, window=10, jobs=5)
    end("w-1", dial("w-1", limit=5), Outcome.FAILED)  # 5 of 10: not more

    batch.refresh_from_db()
    assert batch.is_active


def test_breaker__only_the_last_window_calls_count():
    batch = failing_batch(0.5, window=2, jobs=4)
    jobs = dial("w-1", limit=4)
    end("w-1", jobs[:2], Outcome.FAILED)  # tripped: 2 of 2
    batch.refresh_from_db()
    assert not batch.is_active
    assert "2 of the last 2" in batch.pause_reason


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ([], "breaker"),
        ({"window": 0, "max_failure_ratio": 0.5}, "breaker.window"),
        ({"window": -3, "max_failure_ratio": 0.5}, "breaker.window"),
        ({"window": "5", "max_failure_ratio": 0.5}, "breaker.window"),
        ({"window": 5, "max_failure_ratio": 1.5}, "breaker.max_failure_ratio"),
        ({"window": 5, "max_failure_ratio": -0.1}, "breaker.max_failure_ratio"),
        ({"window": 5}, "breaker.max_failure_ratio"),
        ({"window": 5, "max_failure_ratio": 0.5, "x": 1}, "breaker.x"),
    ],
)
def test_validate_breaker__names_the_bad_field(value, field):
    with pytest.raises(breaker.BreakerError) as caught:
        breaker.validate_breaker(value)
    assert caught.value.field == field


@pytest.mark.slow
def test_run_call_worker__a_tripped_breaker_pauses_the_batch_and_stops_its_calls(
    start_worker,  # noqa: F811
):
    batch = failing_batch(0.5, window=4, jobs=10)

    worker = start_worker(
        "--burst",
        "--worker-id=w-breaker",
        SIMULATED_CALL_SECONDS="0",
        SIMULATED_OUTCOMES="failed=1",
    )

    assert worker.wait() == 0, worker.output
    batch.refresh_from_db()
    assert batch.state == "paused"
    assert batch.pause_source == "system"
    assert batch.pause_reason.startswith("Circuit breaker: 3 of the last 4")
    statuses = sorted(batch.jobs.values_list("status", flat=True))
    assert statuses == [JobStatus.FAILED] * 3 + [JobStatus.PENDING] * 7
