"""Signal receivers of the batches app, connected in BatchesConfig.ready()."""

from __future__ import annotations

import logging
from typing import Any

from accounts.credits import NO_CREDITS_REASON
from batches.models import Batch
from batches.services import (
    accounts_with_credit_paused_batches,
    batch_complete_if_done,
    batch_pause,
    batch_reopen,
    batches_pause_for_credits,
    batches_resume_for_credits,
)
from callcenter.actor import Actor

logger = logging.getLogger(__name__)


def complete_batches_on_jobs_finished(
    sender: Any, finished: list[tuple[Any, Any]], **kwargs: Any
) -> None:
    """jobs_finished is sent after the jobs' transaction committed, so the
    check sees them terminal; it runs once per batch of the group. A failure
    here must not break the worker that finished the jobs: the reconciliation
    task catches up."""
    batches: dict[int, Any] = {}
    for job, _outcome in finished:
        if job.batch_id:
            batches.setdefault(job.batch_id, job)
    for batch_id, job in batches.items():
        actor = Actor.worker(job.claimed_by) if job.claimed_by else None
        try:
            batch_complete_if_done(batch_id=batch_id, actor=actor)
        except Exception:
            logger.exception(
                "batch completion check failed",
                extra={"action": "batch.complete_check", "job_id": job.pk},
            )


def complete_batch_on_resume(
    sender: Any, batch: Any, event: Any, action: str, **kwargs: Any
) -> None:
    """A batch resumed with nothing left to run (its jobs finished, or were
    swept, while it was paused) is complete at once, not at the next
    reconciliation."""
    if action != "resumed":
        return
    try:
        batch_complete_if_done(batch_id=batch.pk)
    except Exception:
        logger.exception(
            "batch completion check failed",
            extra={"action": "batch.complete_check", "batch_id": batch.batch_id},
        )


def reopen_batch_on_new_work(
    sender: Any, batch_id: int, actor: Actor, reason: str, **kwargs: Any
) -> None:
    """jobs.signals.batch_got_work, in the transaction that added the work:
    a completed batch is reopened there, so its new jobs can be claimed."""
    batch_reopen(batch_id=batch_id, actor=actor, reason=reason)


# --- Credits (accounts.signals): batches pause and resume under the account's lock


def pause_batches_on_credits_ran_out(
    sender: Any, account_id: int, actor: Actor, reason: str, **kwargs: Any
) -> list[str]:
    return batches_pause_for_credits(account_id=account_id, actor=actor, reason=reason)


def resume_batches_on_credits_available(
    sender: Any, account_id: int, actor: Actor, **kwargs: Any
) -> list[str]:
    return batches_resume_for_credits(
        account_id=account_id, actor=actor, reason=NO_CREDITS_REASON
    )


def accounts_with_paused_batches(sender: Any, **kwargs: Any) -> set[int]:
    return accounts_with_credit_paused_batches(NO_CREDITS_REASON)


def pause_batch_on_breaker_tripped(
    sender: Any, batch_id: int, reason: str, **kwargs: Any
) -> None:
    """A batch's circuit breaker tripped (jobs/breaker.py): pause it, with the
    system as the actor and the figures as the reason, through the pause
    service, so it is audited and fires batch.paused. A person resumes it."""
    from jobs.breaker import ACTOR_LABEL

    batch = Batch.objects.filter(pk=batch_id).first()
    if batch is None:
        return
    if batch_pause(batch=batch, actor=Actor.system(ACTOR_LABEL), reason=reason):
        logger.warning(
            "batch paused by its circuit breaker",
            extra={
                "action": "batch.breaker_tripped",
                "batch_id": batch.batch_id,
                "reason": reason,
            },
        )
