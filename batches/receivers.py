"""Signal receivers of the batches app, connected in BatchesConfig.ready()."""

from __future__ import annotations

import logging
from typing import Any

from accounts.actor import Actor
from batches.services import batch_complete_if_done

logger = logging.getLogger(__name__)


def complete_batch_on_job_finished(sender: Any, job: Any, **kwargs: Any) -> None:
    """job_finished is sent after the job's transaction committed, so the
    check sees the job terminal. A failure here must not break the worker
    that finished the job: the reconciliation task catches up."""
    if not job.batch_id:
        return
    actor = Actor.worker(job.claimed_by) if job.claimed_by else None
    try:
        batch_complete_if_done(batch_id=job.batch_id, actor=actor)
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
