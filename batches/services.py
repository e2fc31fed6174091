"""Batch transitions. The API, admin, worker, tasks and commands all call these.

Each transition locks the batch row (SELECT … FOR UPDATE), checks the current
state, writes the change with ``update_fields`` and records a ``BatchEvent``.

Why the row lock makes pause exact: a worker's claim takes ``FOR SHARE`` on the
batch row of every job it claims, in the same statement. The pause's
``FOR UPDATE`` waits for claims already in flight to commit, and claims that
start later skip the batch (or re-check it and see it paused). So once
``batch_pause`` has returned, no job of the batch can move to ``in_progress``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Account
from batches.models import Batch, BatchEvent, BatchQuerySet
from batches.signals import batch_transitioned
from callcenter import metrics
from callcenter.actor import Actor, Source
from callcenter.exceptions import (
    BatchCancelledError,
    BatchDeletedError,
    BatchPausedByStaffError,
)
from jobs import transitions
from jobs.breaker import validate_breaker
from jobs.history import BATCH_DELETED_WITH_JOBS, call_records_keep
from jobs.models import CANCELLABLE_STATUSES, Job, JobStatus
from jobs.notify import notify_batch_stopped, notify_jobs_available
from jobs.rules.retries import parse_policy
from jobs.rules.windows import Window

logger = logging.getLogger(__name__)

BATCH_CANCELLED_REASON = "Batch cancelled"
BATCH_DELETED_REASON = "Batch deleted"
UPDATABLE_FIELDS = (
    "is_active",
    "name",
    "description",
    "priority",
    "calling_window",
    "retry_policy",
    "voice",
    "max_concurrent_calls",
    "breaker",
)

Progress = Callable[[int], None]


@dataclass(frozen=True)
class DeleteResult:
    cancelled_jobs: int
    deleted_jobs: int


def _lock(batch: Batch) -> Batch:
    locked = Batch.all_objects.select_for_update().get(pk=batch.pk)
    if locked.deleted_at is not None:
        raise BatchDeletedError(f"Batch {locked.batch_id} has been deleted.")
    return locked


def _sync(target: Batch, source: Batch) -> None:
    """Copy the committed state back onto the caller's instance."""
    for field in source._meta.concrete_fields:
        setattr(target, field.attname, getattr(source, field.attname))


def _record(
    batch: Batch,
    *,
    action: str,
    actor: Actor,
    changes: dict[str, Any] | None = None,
    reason: str = "",
) -> BatchEvent:
    event = BatchEvent.objects.create(
        batch=batch,
        batch_public_id=batch.batch_id,
        account_id=batch.account_id,
        action=action,
        **actor.audit_fields(),
        changes=changes or {},
        reason=reason[:255],
    )
    logger.info(
        "batch %s",
        action,
        extra={
            "action": f"batch.{action}",
            "batch_id": batch.batch_id,
            "source": actor.source,
            "actor": event.actor_label or "-",
            "changes": list((changes or {}).keys()),
        },
    )
    transaction.on_commit(
        lambda: batch_transitioned.send(
            sender=Batch, batch=batch, event=event, action=action
        )
    )
    return event


def _jsonable(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    return {
        k: [_jsonable(before[k]), _jsonable(after[k])]
        for k in after
        if before.get(k) != after[k]
    }


def batch_create(
    *,
    account: Account,
    name: str,
    actor: Actor,
    description: str = "",
    priority: int = 0,
    is_active: bool = True,
    batch_id: str | None = None,
    calling_window: dict[str, Any] | None = None,
    retry_policy: dict[str, Any] | None = None,
    voice: str = "human",
    max_concurrent_calls: int | None = None,
    breaker: dict[str, Any] | None = None,
) -> Batch:
    """A new batch. ``calling_window`` and ``retry_policy`` are checked here
    too (jobs/rules); None means the defaults."""
    with transaction.atomic():
        batch = Batch(
            account=account,
            name=name,
            description=description,
            priority=priority,
            is_active=is_active,
            voice=voice,
            max_concurrent_calls=max_concurrent_calls,
            breaker=validate_breaker(breaker),
        )
        if calling_window is not None:
            batch.calling_window = Window.parse(calling_window).as_json()
        if retry_policy is not None:
            batch.retry_policy = parse_policy(retry_policy)
        if batch_id:
            batch.batch_id = batch_id
        if not is_active:
            batch.paused_at = timezone.now()
            batch.paused_by = actor.user
            batch.pause_source = actor.source
            batch.paused_by_staff = _is_staff(actor)
        batch.full_clean(exclude=["account"])
        batch.save()
        _record(
            batch,
            action=BatchEvent.Action.CREATED,
            actor=actor,
            changes={
                "name": [None, name],
                "priority": [None, priority],
                "is_active": [None, is_active],
                "calling_window": [None, batch.calling_window],
                **(
                    {"retry_policy": [None, batch.retry_policy]}
                    if batch.retry_policy
                    else {}
                ),
                "voice": [None, voice],
            },
        )
    return batch


def _is_staff(actor: Actor) -> bool:
    """The admin is staff only; elsewhere, a staff user."""
    user = actor.user
    return actor.source == Source.ADMIN or bool(user is not None and user.is_staff)


def _apply_pause(locked: Batch, *, actor: Actor, reason: str) -> None:
    if locked.is_active:
        locked.paused_at = timezone.now()
    locked.is_active = False
    locked.paused_by = actor.user
    locked.pause_source = actor.source
    locked.pause_reason = reason[:255]
    locked.paused_by_staff = _is_staff(actor)


def _apply_resume(locked: Batch, *, actor: Actor) -> None:
    if locked.cancelled_at is not None:
        raise BatchCancelledError(
            f"Batch {locked.batch_id} is cancelled and cannot be resumed."
        )
    # Staff and operators (commands) may lift a staff pause; a member, and
    # the system's own automatic resumes, may not.
    if (
        locked.paused_by_staff
        and not _is_staff(actor)
        and actor.source != Source.COMMAND
    ):
        who = locked.paused_by.get_username() if locked.paused_by else "staff"
        why = f": {locked.pause_reason}" if locked.pause_reason else ""
        raise BatchPausedByStaffError(
            f"Batch {locked.batch_id} was paused by staff ({who}){why}. "
            "Only staff can resume it; ask them to."
        )
    locked.is_active = True
    locked.paused_at = None
    locked.paused_by = None
    locked.pause_source = ""
    locked.pause_reason = ""
    locked.paused_by_staff = False


_PAUSE_FIELDS = [
    "is_active",
    "paused_at",
    "paused_by",
    "pause_source",
    "pause_reason",
    "paused_by_staff",
]


def batch_pause(*, batch: Batch, actor: Actor, reason: str = "") -> bool:
    """Pause the batch. Idempotent: returns False if it was already paused.

    A single-row update, whatever the size of the batch: pending jobs stay as
    they are, ready for a resume, and calls in progress finish.
    """
    with transaction.atomic():
        locked = _lock(batch)
        # Staff pausing a batch that a member (or the credit logic) paused
        # takes the pause over, so that the member cannot resume it.
        takes_over = (
            not locked.is_active
            and _is_staff(actor)
            and not locked.paused_by_staff
            and locked.cancelled_at is None
        )
        if not locked.is_active and not takes_over:
            _sync(batch, locked)
            return False
        changes = (
            {"paused_by_staff": [False, True]}
            if takes_over
            else {"is_active": [True, False]}
        )
        _apply_pause(locked, actor=actor, reason=reason)
        locked.save(update_fields=[*_PAUSE_FIELDS, "updated_at"])
        _record(
            locked,
            action=BatchEvent.Action.PAUSED,
            actor=actor,
            changes=changes,
            reason=reason,
        )
    metrics.PAUSES.labels(source=actor.source).inc()
    _sync(batch, locked)
    return True


def batch_resume(*, batch: Batch, actor: Actor) -> bool:
    """Resume the batch. Idempotent; refused for a cancelled batch."""
    with transaction.atomic():
        locked = _lock(batch)
        if locked.is_active:
            _sync(batch, locked)
            return False
        _apply_resume(locked, actor=actor)
        locked.save(update_fields=[*_PAUSE_FIELDS, "updated_at"])
        _record(
            locked,
            action=BatchEvent.Action.RESUMED,
            actor=actor,
            changes={"is_active": [False, True]},
        )
        notify_jobs_available()
    _sync(batch, locked)
    return True


def batch_update(*, batch: Batch, actor: Actor, **fields: Any) -> list[str]:
    """Change any of is_active, name, description, priority and voice.

    Returns the names of the fields whose value really changed; an empty list
    means the request changed nothing (and nothing is written or audited).
    """
    unknown = set(fields) - set(UPDATABLE_FIELDS)
    if unknown:
        raise TypeError(f"batch_update() got unexpected fields: {sorted(unknown)}")
    if "calling_window" in fields:
        fields["calling_window"] = Window.parse(fields["calling_window"]).as_json()
    if "retry_policy" in fields:
        fields["retry_policy"] = parse_policy(fields["retry_policy"])
    if "breaker" in fields:
        fields["breaker"] = validate_breaker(fields["breaker"])
    with transaction.atomic():
        locked = _lock(batch)
        before = {k: getattr(locked, k) for k in fields}
        changed = [k for k, v in fields.items() if before[k] != v]
        if not changed:
            _sync(batch, locked)
            return []
        save_fields = set(changed)
        if "is_active" in changed:
            if fields["is_active"]:
                _apply_resume(locked, actor=actor)
                notify_jobs_available()
            else:
                _apply_pause(locked, actor=actor, reason="")
            save_fields.update(_PAUSE_FIELDS)
        for k in changed:
            setattr(locked, k, fields[k])
        # Only the changed values need checking. full_clean() also ran the
        # unique, foreign-key and CHECK-constraint queries (11 round trips,
        # half of a PATCH under load); the database enforces those anyway.
        locked.clean_fields(
            exclude=[f.name for f in Batch._meta.fields if f.name not in changed]
        )
        locked.save(update_fields=[*sorted(save_fields), "updated_at"])
        action = BatchEvent.Action.UPDATED
        if "is_active" in changed:
            action = (
                BatchEvent.Action.RESUMED
                if fields["is_active"]
                else BatchEvent.Action.PAUSED
            )
        _record(
            locked,
            action=action,
            actor=actor,
            changes=_diff(before, {k: fields[k] for k in changed}),
        )
    _sync(batch, locked)
    return changed


def batch_cancel_jobs(
    *,
    batch: Batch,
    reason: str,
    statuses: Iterable[str] = CANCELLABLE_STATUSES,
    chunk_size: int | None = None,
    progress: Progress | None = None,
    guard: Callable[[], bool] | None = None,
) -> int:
    """Cancel the batch's jobs in the given statuses, one committed chunk at a time.

    Chunks keep each statement short, so a million-job sweep never locks out
    the claims of other batches. Callers make the batch unclaimable first, so
    no new job of it can start while the sweep runs. Idempotent: run it again
    and it cancels only what is left.

    ``guard`` runs inside each chunk's transaction, before the chunk is
    touched; when it returns False the sweep stops there.
    """
    chunk = chunk_size or settings.JOB_SWEEP_CHUNK_SIZE
    statuses = list(statuses)
    total = 0
    if connection.vendor == "postgresql":
        chunks = _cancel_chunks_pg(batch, statuses, chunk, reason[:255], guard)
    else:
        chunks = _cancel_chunks_orm(batch, statuses, chunk, reason[:255], guard)
    for cancelled in chunks:
        total += cancelled
        if progress:
            progress(total)
    return total


def _cancel_chunks_pg(
    batch: Batch,
    statuses: list[str],
    chunk: int,
    reason: str,
    guard: Callable[[], bool] | None = None,
):
    # One statement per chunk: a keyset walk over job_batch_status_idx, so no
    # chunk re-reads the index entries that earlier chunks made dead, and the
    # `j.status = …` re-check skips a job a worker finished meanwhile.
    for status in sorted(set(statuses)):
        after = 0
        while True:
            with transaction.atomic():
                if guard is not None and not guard():
                    return
                # The sweep is idempotent and the flip before it was a durable
                # commit, so a server crash that loses the last chunks only
                # leaves jobs no claim can take (cancel_inactive_batch_jobs
                # finishes them). Not waiting for each chunk's WAL flush keeps
                # the sweep out of the claimers' commit queue.
                last_id, cancelled = transitions.sweep_cancel_chunk(
                    batch_id=batch.pk,
                    status=status,
                    after=after,
                    limit=chunk,
                    reason=reason,
                )
            if last_id is None:
                break
            after = last_id
            yield cancelled


def _cancel_chunks_orm(
    batch: Batch,
    statuses: list[str],
    chunk: int,
    reason: str,
    guard: Callable[[], bool] | None = None,
):
    for ids in _walk_job_ids(batch, statuses, chunk):
        with transaction.atomic():
            if guard is not None and not guard():
                return
            cancelled = transitions.update(
                "sweep_cancel",
                id__in=ids,
                from_statuses=statuses,
                values={
                    "cancel_reason": reason,
                    "finished_at": timezone.now(),
                    "updated_at": timezone.now(),
                },
            )
        yield cancelled


def _walk_job_ids(batch: Batch, statuses: Iterable[str], chunk: int):
    """Yield the batch's job ids in the given statuses, a chunk at a time.

    A keyset walk over job_batch_status_idx (batch, status, id): each chunk
    starts where the last one ended, so it never re-reads the index entries
    that earlier chunks have just made dead. (Re-running "the first N left"
    made a million-job sweep quadratic.)
    """
    for status in sorted(set(statuses)):
        last_id = 0
        while True:
            ids = list(
                Job.objects.filter(batch_id=batch.pk, status=status, id__gt=last_id)
                .order_by("id")
                .values_list("id", flat=True)[:chunk]
            )
            if not ids:
                break
            last_id = ids[-1]
            yield ids


def _delete_jobs(
    *,
    batch: Batch,
    chunk_size: int,
    progress: Progress | None,
    guard: Callable[[], bool] | None = None,
) -> int:
    total = 0
    for ids in _walk_job_ids(batch, [s.value for s in JobStatus], chunk_size):
        with transaction.atomic():
            if guard is not None and not guard():
                break
            # The jobs go; the record of every call made for them stays.
            call_records_keep(job_ids=ids, reason=BATCH_DELETED_WITH_JOBS)
            deleted, _ = Job.objects.filter(id__in=ids).delete()
            total += deleted
        if progress:
            progress(total)
    return total


def batch_cancel(
    *,
    batch: Batch,
    actor: Actor,
    reason: str = BATCH_CANCELLED_REASON,
    progress: Progress | None = None,
) -> int:
    """Cancel the batch permanently; every non-terminal job becomes cancelled.

    The batch is flipped first, in its own short transaction, so no claim can
    take its jobs; then the jobs are cancelled in chunks. Cancelling an already
    cancelled batch only finishes an interrupted sweep. Returns the number of
    jobs cancelled now.
    """
    locked = batch_cancel_flip(batch=batch, actor=actor, reason=reason)
    cancelled = batch_cancel_jobs(batch=locked, reason=reason, progress=progress)
    record_jobs_cancelled(locked, actor=actor, cancelled=cancelled, reason=reason)
    return cancelled


def batch_cancel_flip(*, batch: Batch, actor: Actor, reason: str) -> Batch:
    """The first half of ``batch_cancel``: the batch becomes cancelled (and so
    unclaimable) in one short transaction. Returns the locked, updated row;
    the caller's ``batch`` is updated too. Inside a caller's transaction the
    row stays locked until that one commits."""
    with transaction.atomic():
        locked = _lock(batch)
        if locked.cancelled_at is None:
            before = {"is_active": locked.is_active, "cancelled_at": None}
            locked.is_active = False
            locked.cancelled_at = timezone.now()
            locked.save(update_fields=["is_active", "cancelled_at", "updated_at"])
            _record(
                locked,
                action=BatchEvent.Action.CANCELLED,
                actor=actor,
                changes=_diff(
                    before, {"is_active": False, "cancelled_at": locked.cancelled_at}
                ),
                reason=reason,
            )
        # At the commit, the workers hang up the batch's unanswered calls.
        notify_batch_stopped(locked.pk)
    _sync(batch, locked)
    return locked


def record_jobs_cancelled(
    batch: Batch,
    *,
    actor: Actor,
    cancelled: int,
    reason: str,
    changes: dict[str, Any] | None = None,
) -> None:
    """The JOBS_CANCELLED event that ends a cancel sweep (none for zero)."""
    if cancelled:
        with transaction.atomic():
            _record(
                batch,
                action=BatchEvent.Action.JOBS_CANCELLED,
                actor=actor,
                changes={"jobs_cancelled": cancelled, **(changes or {})},
                reason=reason,
            )


def batch_delete(
    *,
    batch: Batch,
    actor: Actor,
    delete_jobs: bool = False,
    progress: Progress | None = None,
) -> DeleteResult:
    """Delete the batch: it disappears from every default queryset.

    Its pending, scheduled, suspended and in-progress jobs become cancelled
    with the reason "Batch deleted"; completed and failed jobs stay as history.
    With ``delete_jobs=True`` all of its jobs are removed as well, and each
    one that was dialled leaves a ``CallRecord`` (jobs/history.py). The audit
    trail is kept either way.
    """
    locked = batch_delete_flip(batch=batch, actor=actor, delete_jobs=delete_jobs)
    chunk = settings.JOB_SWEEP_CHUNK_SIZE
    if delete_jobs:
        # Cancel first so that a call in progress is told to hang up, then
        # remove the rows.
        cancelled = batch_cancel_jobs(
            batch=locked, reason=BATCH_DELETED_REASON, progress=progress
        )
        deleted = _delete_jobs(batch=locked, chunk_size=chunk, progress=progress)
        return DeleteResult(cancelled_jobs=cancelled, deleted_jobs=deleted)
    cancelled = batch_cancel_jobs(
        batch=locked, reason=BATCH_DELETED_REASON, progress=progress
    )
    return DeleteResult(cancelled_jobs=cancelled, deleted_jobs=0)


def batch_delete_flip(*, batch: Batch, actor: Actor, delete_jobs: bool) -> Batch:
    """The first half of ``batch_delete``: the batch is marked deleted (and so
    unclaimable) in one short transaction. As ``batch_cancel_flip``."""
    with transaction.atomic():
        locked = _lock(batch)
        before = {"is_active": locked.is_active, "deleted_at": None}
        locked.is_active = False
        locked.deleted_at = timezone.now()
        locked.save(update_fields=["is_active", "deleted_at", "updated_at"])
        _record(
            locked,
            action=BatchEvent.Action.DELETED,
            actor=actor,
            changes={
                **_diff(before, {"is_active": False, "deleted_at": locked.deleted_at}),
                "delete_jobs": delete_jobs,
            },
        )
        notify_batch_stopped(locked.pk)
    _sync(batch, locked)
    return locked


def delete_jobs_sweep(
    *,
    batch: Batch,
    progress: Progress | None = None,
    guard: Callable[[], bool] | None = None,
) -> int:
    """Remove every job of a deleted batch, in chunks; each dialled one leaves
    a ``CallRecord``. Idempotent."""
    return _delete_jobs(
        batch=batch,
        chunk_size=settings.JOB_SWEEP_CHUNK_SIZE,
        progress=progress,
        guard=guard,
    )


# --- Sweeping the jobs of inactive batches (cancel_inactive_batch_jobs) -----

INACTIVE_SWEEP_REASON = "Batch inactive"
# A paused batch keeps its suspended jobs: they wait for credits, and the
# batch resumes by itself when credits are added. A cancelled or deleted batch
# never runs again, so nothing it holds is worth keeping.
PAUSED_SWEEP_STATUSES = (JobStatus.PENDING, JobStatus.SCHEDULED)
ENDED_SWEEP_STATUSES = (JobStatus.PENDING, JobStatus.SCHEDULED, JobStatus.SUSPENDED)


def batch_sweep_statuses(batch: Batch) -> tuple[str, ...]:
    """The job statuses that cancel_inactive_batch_jobs cancels for this batch."""
    if batch.cancelled_at is not None or batch.deleted_at is not None:
        return ENDED_SWEEP_STATUSES
    return PAUSED_SWEEP_STATUSES


def batch_still_inactive(batch_pk: int) -> bool:
    # FOR SHARE: a resume (FOR UPDATE) waits for the chunk in flight, and the
    # next chunk sees it and stops, so the sweep never cancels a job of a
    # batch that is active again.
    with connection.cursor() as cursor:
        lock = " FOR SHARE" if connection.vendor == "postgresql" else ""
        cursor.execute(
            "SELECT is_active FROM batches_batch WHERE id = %s" + lock, [batch_pk]
        )
        row = cursor.fetchone()
    return row is not None and not row[0]


def batch_cancel_inactive_jobs(
    *,
    batch: Batch,
    actor: Actor,
    reason: str = INACTIVE_SWEEP_REASON,
    chunk_size: int | None = None,
    progress: Progress | None = None,
) -> int:
    """Cancel the pending and scheduled jobs of an inactive batch, in chunks.

    Calls in progress are left to finish, as a pause promises. Idempotent: a
    second run cancels nothing. An active batch is left alone (returns 0),
    and so is one that is resumed while the sweep runs. One JOBS_CANCELLED
    event records how many jobs were cancelled.
    """
    if not Batch.all_objects.filter(pk=batch.pk, is_active=False).exists():
        return 0
    statuses = batch_sweep_statuses(batch)
    cancelled = batch_cancel_jobs(
        batch=batch,
        reason=reason,
        statuses=statuses,
        chunk_size=chunk_size,
        progress=progress,
        guard=lambda: batch_still_inactive(batch.pk),
    )
    record_jobs_cancelled(
        batch,
        actor=actor,
        cancelled=cancelled,
        reason=reason,
        changes={"statuses": list(statuses)},
    )
    return cancelled


# --- Completion: exactly once, however many workers finish at once ----------

# Plain SQL that PostgreSQL and SQLite (make run) both accept.
_COMPLETE_SQL = """
    UPDATE batches_batch
       SET completed_at = %s, updated_at = %s
     WHERE id = %s
       AND completed_at IS NULL
       AND is_active
       AND deleted_at IS NULL
       AND EXISTS (SELECT 1 FROM jobs_job j WHERE j.batch_id = batches_batch.id)
       AND NOT EXISTS (
           SELECT 1 FROM jobs_job j
            WHERE j.batch_id = batches_batch.id AND j.status IN ({open}))
    RETURNING id
"""


def batch_complete_if_done(*, batch_id: int, actor: Actor | None = None) -> bool:
    """Mark the batch completed if no job of it is left that is not terminal.

    One conditional UPDATE decides. When many workers finish the last jobs at
    the same moment, each runs it after its own commit; the row lock makes them
    take turns and PostgreSQL re-checks ``completed_at IS NULL`` on the row the
    winner wrote, so exactly one of them gets the row back and records the
    event (and so fires ``batch.completed``). Whoever commits last sees every
    job terminal, so the completion is never missed either.

    A paused batch is not completed (its remaining work might be resumed and
    it has none, but it is the resume that decides); an empty batch neither.
    Returns True only for the caller that completed the batch.
    """
    from jobs.models import NON_TERMINAL_STATUSES

    actor = actor or Actor.system("completion")
    open_statuses = sorted(str(s) for s in NON_TERMINAL_STATUSES)
    placeholders = ", ".join(["%s"] * len(open_statuses))
    if not connection.in_atomic_block:
        # The common answer, "not done", in one read and no transaction: one
        # round trip for every job a worker finishes (job_batch_status_idx).
        # Whoever finishes the last job still sees every job terminal here,
        # because this read starts after that job's commit.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT EXISTS (SELECT 1 FROM jobs_job WHERE batch_id = %s"
                f" AND status IN ({placeholders}))",
                [batch_id, *open_statuses],
            )
            if cursor.fetchone()[0]:
                return False
    sql = _COMPLETE_SQL.format(open=placeholders)
    now = timezone.now()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(sql, [now, now, batch_id, *open_statuses])
            if cursor.fetchone() is None:
                return False
        batch = Batch.all_objects.get(pk=batch_id)
        _record(
            batch,
            action=BatchEvent.Action.COMPLETED,
            actor=actor,
            changes={"completed_at": [None, _jsonable(batch.completed_at)]},
        )
    return True


def batch_reopen(*, batch_id: int, actor: Actor, reason: str = "") -> bool:
    """A completed batch got new work (jobs imported, a job requeued): make
    it claimable again, audited (``reopened``). Runs in the caller's
    transaction, the one that adds the work. One conditional UPDATE decides:
    a batch that is not completed (the usual case) costs that statement and
    nothing else. Returns whether it reopened the batch."""
    if not Batch.all_objects.filter(pk=batch_id, completed_at__isnull=False).update(
        completed_at=None
    ):
        return False
    batch = Batch.all_objects.get(pk=batch_id)
    _record(
        batch,
        action=BatchEvent.Action.REOPENED,
        actor=actor,
        changes={"completed": [True, False]},
        reason=reason,
    )
    return True


def batches_reconcile_completions() -> int:
    """Complete the batches whose completion was missed (a worker that died
    between its commit and the check, jobs finished by a bulk sweep).

    Walks the active, not completed batches (the small set the claim index
    covers); each check is a few index probes. Returns how many it completed.
    """
    candidates = Batch.objects.claimable().order_by("id").values_list("id", flat=True)
    completed = 0
    # A list, not .iterator(): outside a transaction that would be a WITH
    # HOLD cursor, which a transaction-mode pooler cannot keep between
    # the statements that read it (docs/deploy.md#behind-pgbouncer).
    for pk in list(candidates):
        if batch_complete_if_done(batch_id=pk, actor=Actor.system("reconciliation")):
            completed += 1
    return completed


# --- Credits: paused while the account cannot pay (accounts.signals) ---------------


def batches_pause_for_credits(
    *, account_id: int, actor: Actor, reason: str
) -> list[str]:
    """Pause the account's claimable batches (in the caller's transaction,
    which holds the account row). Returns the ids of those it paused."""
    paused = []
    for batch in Batch.objects.filter(account_id=account_id).claimable():
        if batch_pause(batch=batch, actor=actor, reason=reason):
            paused.append(batch.batch_id)
    return paused


def _credit_paused(reason: str) -> BatchQuerySet:
    return Batch.objects.filter(
        is_active=False,
        cancelled_at__isnull=True,
        pause_source="system",
        pause_reason=reason,
    )


def batches_resume_for_credits(
    *, account_id: int, actor: Actor, reason: str
) -> list[str]:
    """Resume the account's batches that the system paused for ``reason``;
    a batch a person paused stays paused. Returns the ids of those resumed."""
    resumed = []
    for batch in _credit_paused(reason).filter(account_id=account_id).order_by("id"):
        if batch_resume(batch=batch, actor=actor):
            resumed.append(batch.batch_id)
    return resumed


def accounts_with_credit_paused_batches(reason: str) -> set[int]:
    return set(_credit_paused(reason).values_list("account_id", flat=True))
