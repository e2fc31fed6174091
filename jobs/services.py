"""Job transitions that people trigger (cancel, requeue), the dial gate's
refusals and deferrals, and the credits' hold and restore.

The worker's own transitions (claim, dial, finish, lease recovery) live in
jobs/claim.py and jobs/lifecycle.py; they follow the same rules: conditional
updates that check the current status, and an audit of who did what. Every
write of the status itself goes through jobs/transitions.py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.credits import account_balance_below
from callcenter.actor import Actor
from callcenter.exceptions import DomainError
from jobs import transitions
from jobs.history import RETENTION_PURGE, call_records_keep
from jobs.models import TERMINAL_STATUSES, Job, JobEvent, JobStatus
from jobs.notify import notify_jobs_available
from jobs.signals import send_batch_got_work, send_jobs_finished_on_commit

logger = logging.getLogger(__name__)

MANUAL_CANCEL_REASON = "Cancelled by hand"
REQUEUEABLE_STATUSES = frozenset({JobStatus.FAILED, JobStatus.SUSPENDED})


class JobNotCancellableError(DomainError):
    code = "job_not_cancellable"


class JobNotRequeueableError(DomainError):
    code = "job_not_requeueable"


class JobNotUpdatableError(DomainError):
    code = "job_not_updatable"


def job_record(
    job: Job,
    *,
    action: str,
    actor: Actor,
    changes: dict[str, Any] | None = None,
    reason: str = "",
) -> JobEvent:
    event = JobEvent.objects.create(
        job=job,
        job_pk=job.pk,
        account_id=job.account_id,
        action=action,
        **actor.audit_fields(),
        changes=changes or {},
        reason=reason[:255],
    )
    logger.info(
        "job %s",
        action,
        extra={
            "action": f"job.{action}",
            "job_id": job.pk,
            "source": actor.source,
            "actor": event.actor_label or "-",
        },
    )
    return event


def job_cancel(*, job: Job, actor: Actor, reason: str = MANUAL_CANCEL_REASON) -> Job:
    """Cancel one job. A call in progress is hung up at the worker's next
    lease renewal; its outcome is still recorded in ``result``."""
    with transaction.atomic():
        locked = Job.objects.select_for_update().get(pk=job.pk)
        if locked.status in TERMINAL_STATUSES:
            raise JobNotCancellableError(
                f"Job {locked.pk} is already {locked.status} and cannot be cancelled."
            )
        before = locked.status
        locked.cancel_reason = reason[:255]
        locked.finished_at = timezone.now()
        transitions.save(
            locked, "cancel", fields=["cancel_reason", "finished_at", "updated_at"]
        )
        job_record(
            locked,
            action="cancelled",
            actor=actor,
            changes={"status": [before, JobStatus.CANCELLED]},
            reason=reason,
        )
        send_jobs_finished_on_commit([(locked, None)])
    return locked


def _held_and_marked(job: Job, worker_id: str, token: str) -> Job | None:
    return (
        Job.objects.select_for_update()
        .filter(
            pk=job.pk,
            status=JobStatus.IN_PROGRESS,
            claimed_by=worker_id,
            claim_token=token,
            claimed_at=job.claimed_at,
            dialed_at__isnull=False,
        )
        .first()
    )


def job_refuse_dial(
    *,
    job: Job,
    worker_id: str,
    reason: str,
    token: str = "",
    code: str = "",
    settle: bool = True,
) -> bool:
    """End a job the dial gate marked dialled but must not call: a rule
    (jobs/rules/) refuses it, e.g. its number is on a DNC list.

    Runs before the dialer is asked to call, in the gate's transaction: the
    job becomes ``cancelled`` with ``reason``, the attempt is given back, and
    the worker is the audited actor (the rule's ``code`` in the event's
    changes). The call's credit reservation is refunded unless ``settle`` is
    False (the gate refunds after its commit). Conditional on the worker
    process still holding this claim (its id and claim token); returns
    whether it did.
    """
    from accounts.credits import claim_key, credits_settle

    actor = Actor.worker(worker_id)
    with transaction.atomic():
        locked = _held_and_marked(job, worker_id, token)
        if locked is None:
            return False
        locked.cancel_reason = f"Not dialled: {reason}"[:255]
        locked.stop_code = code[:32]
        locked.finished_at = timezone.now()
        locked.attempts = max(locked.attempts - 1, 0)
        locked.dialed_at = None
        locked.started_at = job.started_at  # as before the mark
        locked.lease_expires_at = None
        transitions.save(
            locked,
            "refuse",
            fields=[
                "cancel_reason",
                "stop_code",
                "finished_at",
                "attempts",
                "dialed_at",
                "started_at",
                "lease_expires_at",
                "updated_at",
            ]
        )
        job_record(
            locked,
            action="refused",
            actor=actor,
            changes={
                "status": [JobStatus.IN_PROGRESS, JobStatus.CANCELLED],
                "code": code,
            },
            reason=reason,
        )
        send_jobs_finished_on_commit([(locked, None)])
    if settle:
        credits_settle(
            account_id=locked.account_id,
            job_pk=locked.pk,
            key=claim_key(locked.claimed_at),
            cost=0,
            note=f"not dialled: {code or 'refused by a dialing rule'}",
        )
    transitions.reflect(job, "refuse")
    job.cancel_reason = locked.cancel_reason
    return True


def job_defer_dial(
    *,
    job: Job,
    worker_id: str,
    code: str,
    until: datetime,
    reason: str,
    token: str = "",
) -> bool:
    """Put back a job the dial gate marked dialled but may not call before
    ``until`` (a rule's ``Defer``): ``scheduled`` at ``until``, the attempt
    given back, the claim released, audited. The caller refunds the
    reservation. Conditional on the worker still holding the claim."""
    actor = Actor.worker(worker_id)
    with transaction.atomic():
        locked = _held_and_marked(job, worker_id, token)
        if locked is None:
            return False
        locked.scheduled_at = until
        locked.attempts = max(locked.attempts - 1, 0)
        locked.dialed_at = None
        locked.started_at = job.started_at
        locked.claimed_by = ""
        locked.claim_token = ""
        locked.claimed_at = None
        locked.lease_expires_at = None
        transitions.save(
            locked,
            "defer",
            fields=[
                "scheduled_at",
                "attempts",
                "dialed_at",
                "started_at",
                "claimed_by",
                "claim_token",
                "claimed_at",
                "lease_expires_at",
                "updated_at",
            ]
        )
        job_record(
            locked,
            action="deferred",
            actor=actor,
            changes={
                "status": [JobStatus.IN_PROGRESS, JobStatus.SCHEDULED],
                "code": code,
                "until": until.isoformat(),
            },
            reason=reason,
        )
    transitions.reflect(job, "defer")
    return True


def job_set_consent(*, job: Job, actor: Actor, consent_at: datetime | None) -> Job:
    """Record (or clear) when the person consented to be called; audited.
    Only an unfinished job: a finished one is history."""
    with transaction.atomic():
        locked = Job.objects.select_for_update().get(pk=job.pk)
        if locked.status in TERMINAL_STATUSES:
            raise JobNotUpdatableError(
                f"Job {locked.pk} is already {locked.status}; its consent cannot "
                "change."
            )
        before = locked.consent_at
        if before == consent_at:
            return locked
        locked.consent_at = consent_at
        locked.save(update_fields=["consent_at", "updated_at"])
        job_record(
            locked,
            action="updated",
            actor=actor,
            changes={
                "consent_at": [
                    before.isoformat() if before else None,
                    consent_at.isoformat() if consent_at else None,
                ]
            },
        )
    return locked


def job_requeue(*, job: Job, actor: Actor) -> Job:
    """Put a failed or suspended job back in the queue with a fresh budget."""
    with transaction.atomic():
        locked = Job.objects.select_for_update().get(pk=job.pk)
        if locked.status not in REQUEUEABLE_STATUSES:
            raise JobNotRequeueableError(
                f"Only failed or suspended jobs can be requeued; job {locked.pk} "
                f"is {locked.status}."
            )
        batch = locked.batch
        if batch is not None and (batch.cancelled_at or batch.deleted_at):
            # Such a job would sit pending forever: no claim takes it.
            raise JobNotRequeueableError(
                f"Job {locked.pk} belongs to a {batch.state} batch."
            )
        before = locked.status
        if before == JobStatus.FAILED:
            locked.max_attempts = locked.attempts + max(1, locked.max_attempts)
        locked.finished_at = None
        locked.last_error = ""
        locked.claimed_by = ""
        locked.claimed_at = None
        locked.lease_expires_at = None
        locked.dialed_at = None
        transitions.save(locked, "requeue")
        if batch is not None:
            # A batch marked completed must be claimable again.
            send_batch_got_work(
                batch_id=batch.pk, actor=actor, reason="a job was requeued"
            )
        job_record(
            locked,
            action="requeued",
            actor=actor,
            changes={"status": [before, JobStatus.PENDING]},
        )
        notify_jobs_available()
    return locked


def jobs_purge_finished(*, older_than_days: int, chunk_size: int | None = None) -> int:
    """Delete terminal jobs that finished more than ``older_than_days`` ago
    (the JOB_RETENTION_DAYS policy, off by default), in committed chunks.

    Batch audit events are kept; job audit events lose their link but keep
    the job's id; every dialled job leaves a ``CallRecord``.
    """
    from datetime import timedelta

    from django.conf import settings

    from jobs.models import TERMINAL_STATUSES

    if older_than_days <= 0:
        raise ValueError("older_than_days must be positive")
    chunk = chunk_size or settings.JOB_SWEEP_CHUNK_SIZE
    cutoff = timezone.now() - timedelta(days=older_than_days)
    total = 0
    while True:
        with transaction.atomic():
            ids = list(
                Job.objects.filter(status__in=TERMINAL_STATUSES, finished_at__lt=cutoff)
                .order_by()
                .values_list("id", flat=True)[:chunk]
            )
            if not ids:
                break
            call_records_keep(job_ids=ids, reason=RETENTION_PURGE)
            Job.objects.filter(id__in=ids).delete()
            total += len(ids)
    if total:
        logger.info(
            "old finished jobs purged",
            extra={"action": "jobs.purged", "count": total, "cutoff": cutoff},
        )
    return total


# --- Credits: held while the account cannot pay (accounts.signals) -----------------


def jobs_suspend_for_credits(
    *, account_id: int, while_balance_below: int, chunk_size: int | None = None
) -> int:
    """Suspend the account's pending and scheduled jobs, one committed chunk
    at a time. Each chunk re-reads the balance under a share lock first and
    stops as soon as credits have arrived."""
    chunk = chunk_size or settings.JOB_SWEEP_CHUNK_SIZE
    held = transitions.TRANSITIONS["hold_for_credits"].sources
    total = 0
    while True:
        with transaction.atomic():
            if not account_balance_below(account_id, while_balance_below):
                break
            ids = _chunk(account_id, held, chunk)
            if not ids:
                break
            total += transitions.update(
                "hold_for_credits",
                id__in=ids,
                values={"updated_at": timezone.now()},
            )
    return total


def jobs_restore_after_credits(
    *, account_id: int, chunk_size: int | None = None
) -> int:
    """Return the account's suspended jobs to the queue (to ``scheduled`` if
    their time has not come), one committed chunk at a time."""
    chunk = chunk_size or settings.JOB_SWEEP_CHUNK_SIZE
    total = 0
    while True:
        with transaction.atomic():
            ids = _chunk(account_id, [JobStatus.SUSPENDED], chunk)
            if not ids:
                break
            now = timezone.now()
            # A job whose time has not come goes back to waiting for it.
            total += transitions.update(
                "restore_scheduled",
                id__in=ids,
                scheduled_at__gt=now,
                values={"updated_at": now},
            )
            total += transitions.update(
                "restore", id__in=ids, values={"updated_at": now}
            )
            notify_jobs_available()
    return total


def accounts_with_suspended_jobs() -> set[int]:
    return set(
        Job.objects.filter(status=JobStatus.SUSPENDED)
        .order_by()
        .values_list("account_id", flat=True)
        .distinct()
    )


def _chunk(account_id: int, statuses: Iterable[str], chunk: int) -> list[int]:
    return list(
        Job.objects.filter(account_id=account_id, status__in=list(statuses))
        .order_by()
        .values_list("id", flat=True)[:chunk]
    )
