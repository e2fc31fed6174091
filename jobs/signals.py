"""Signals about jobs, sent after the change has committed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import transaction
from django.dispatch import Signal

if TYPE_CHECKING:
    from callcenter.actor import Actor
    from jobs.models import Job

# Sent with: finished, a list of (job, outcome) pairs, outcome a str or None.
# Every job is in it once, when it reaches a terminal status (completed, failed
# or cancelled); jobs that finished in one commit (a worker recording the calls
# that ended in one round) come in one list, so receivers can do their work
# once per batch or account instead of once per job.
jobs_finished = Signal()

# Sent with: batch_id, failures, window, ratio and reason, when more than
# ``ratio`` of a batch's last ``window`` ended calls failed (jobs/breaker.py),
# after the failing outcome has committed. The batches app pauses the batch.
breaker_tripped = Signal()

# Sent with batch_id, actor and reason, inside the transaction that gave the
# batch new work (jobs imported, a job requeued), before it commits: a batch
# marked completed must become claimable again in that same transaction. The
# batches app reopens it (batches.services.batch_reopen, audited).
batch_got_work = Signal()


def send_batch_got_work(*, batch_id: int, actor: Actor, reason: str) -> None:
    """Announce new work in ``batch_id`` (in the caller's transaction)."""
    from jobs.models import Job

    batch_got_work.send(sender=Job, batch_id=batch_id, actor=actor, reason=reason)


def send_jobs_finished_on_commit(finished: list[tuple[Job, str | None]]) -> None:
    """Send ``jobs_finished`` once the current transaction has committed (at
    once in autocommit), so no receiver ever hears of a rolled-back change."""
    if not finished:
        return
    from jobs.models import Job

    transaction.on_commit(lambda: jobs_finished.send(sender=Job, finished=finished))
