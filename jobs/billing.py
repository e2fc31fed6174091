"""The billing seam between the call worker and account credits.

The worker calls ``reserve_call`` after a claim and before dialling, and
``settle_call`` after the call ended. Both are keyed by the job and its claim
(``claimed_at``), so a retried settle after a lost connection charges once.
The rules themselves live in accounts/credits.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db.models.functions import Now

from jobs import transitions
from jobs.models import Job

logger = logging.getLogger(__name__)


def reserve_call(job: Job, *, sweep: Callable[[int], None] | None = None) -> bool:
    """May ``job``'s account pay for this call? False means: do not dial.

    Reserves the call's starting cost atomically. When the balance does not
    cover it, the account's campaigns are suspended (batches auto-paused,
    pending jobs suspended) and the worker hands this job back with
    ``suspend_job``. ``sweep`` (given the account id) replaces that
    suspension: the worker runs it in a background thread, because it can
    take long and the worker's main thread must keep renewing leases.
    """
    from accounts.credits import call_reservation, claim_key, credits_reserve

    if credits_reserve(
        account_id=job.account_id,
        amount=call_reservation(),
        job_pk=job.pk,
        key=claim_key(job.claimed_at),
    ):
        return True
    logger.info(
        "account cannot pay for the call",
        extra={"action": "credits.reserve_failed", "job_id": job.pk},
    )
    (sweep or suspend_account)(job.account_id)
    return False


def suspend_account(account_id: int) -> None:
    """Suspend the campaigns of an account that cannot pay for a call."""
    from accounts.credits import account_suspend_for_credits

    account_suspend_for_credits(account_id=account_id)


def reserve_calls(
    jobs: list[Job],
    *,
    worker_id: str,
    token: str = "",
    sweep: Callable[[int], None] | None = None,
) -> list[Job]:
    """``reserve_call`` for every job of a claim; returns those that may be
    dialled, in order, and suspends the others (``suspend_job``).

    When the balance covers the whole claim this is one statement per
    account; otherwise (or on a retry) each job goes through ``reserve_call``.
    """
    from accounts.credits import call_reservation, claim_key, credits_reserve_many

    by_account: dict[int, list[Job]] = {}
    for job in jobs:
        by_account.setdefault(job.account_id, []).append(job)
    reserved: set[int] = set()
    for account_id, group in by_account.items():
        reserved |= credits_reserve_many(
            account_id=account_id,
            amount=call_reservation(),
            claims=[(job.pk, claim_key(job.claimed_at)) for job in group],
        )
    payable = []
    for job in jobs:
        if job.pk in reserved or reserve_call(job, sweep=sweep):
            payable.append(job)
        else:
            suspend_job(job, worker_id=worker_id, token=token)
    return payable


def extend_call(job: Job, *, minute: int) -> bool:
    """Reserve the ``minute``-th minute of ``job``'s call in progress; False
    means the account cannot pay for it (see CALL_OUT_OF_CREDITS)."""
    from accounts.credits import claim_key, credits_extend

    return credits_extend(
        account_id=job.account_id,
        job_pk=job.pk,
        key=claim_key(job.claimed_at),
        minute=minute,
    )


def settle_calls(ended: list[tuple[Job, float, str]]) -> None:
    """``settle_call`` for every (job, duration_seconds, outcome) of a round
    of the worker: one statement per account in the common case."""
    from accounts.credits import Settlement, call_cost, claim_key, credits_settle_many

    by_account: dict[int, list[Settlement]] = {}
    for job, duration_seconds, outcome in ended:
        by_account.setdefault(job.account_id, []).append(
            Settlement(
                job_pk=job.pk,
                key=claim_key(job.claimed_at),
                cost=call_cost(duration_seconds=duration_seconds, outcome=outcome),
                note=f"{outcome}, {duration_seconds:.0f}s",
            )
        )
    for account_id, settlements in by_account.items():
        credits_settle_many(account_id=account_id, settlements=settlements)


def settle_call(job: Job, *, duration_seconds: float, outcome: str) -> None:
    """Charge the real cost of a call that ended against its reservation."""
    settle_calls([(job, duration_seconds, outcome)])


def suspend_job(job: Job, *, worker_id: str, token: str = "") -> bool:
    """Put a claimed, undialled job in ``suspended``: its account cannot pay.

    Conditional on the worker still holding it; returns whether it did.
    """
    updated = transitions.update(
        "suspend",
        pk=job.pk,
        claimed_by=worker_id,
        claim_token=token,
        dialed_at__isnull=True,
        values={
            "claimed_by": "",
            "claimed_at": None,
            "lease_expires_at": None,
            "updated_at": Now(),
        },
    )
    if updated:
        transitions.reflect(job, "suspend")
        logger.info(
            "job suspended: account cannot pay",
            extra={
                "action": "job.suspended",
                "job_id": job.pk,
                "batch_id": job.batch_id,
                "worker_id": worker_id,
            },
        )
    return bool(updated)
