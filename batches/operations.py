"""Long batch sweeps in the background, with progress (``Operation``).

Cancelling or deleting a batch of a million jobs takes about 25 s of
chunked sweeping; inside an HTTP request behind a 30 s proxy timeout that
fails half-way. So the API and the admin call ``batch_cancel_request`` and
``batch_delete_request``:

* The batch is flipped at once, as ``batch_cancel``/``batch_delete`` do (the
  same ``FOR UPDATE`` on the batch row, so the pause stays exact: once the
  flip has committed no claim can take a job of the batch).
* Up to ``SWEEP_INLINE_MAX_JOBS`` jobs to sweep, the sweep runs inline and
  the caller gets the counts, as before.
* Above it, an ``Operation`` row is written in the flip's own transaction
  and a django-q2 task (``batches.tasks.run_operation``) sweeps after the
  commit. The caller gets the operation; ``GET /api/v1/operations/{id}``
  and the admin show its progress.

A run holds the operation through a lease that it renews after every
committed chunk. It stops by itself after ``RUN_BUDGET_SECONDS`` (below the
task timeout) and queues its own continuation. A run that was killed (a
``kill -9``, a host restart, a lost task) leaves an expired lease, and the
``resume interrupted operations`` schedule (every minute) queues it again.
The sweeps are idempotent (each chunk re-checks the job's status), so a
chunk done twice changes nothing; the counts shown may miss the chunk that
was committed when the kill came, never count one twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce, Now
from django.utils import timezone

from batches import services
from batches.models import Batch, Operation
from batches.selectors import batch_status_counts
from callcenter.actor import Actor
from jobs.models import CANCELLABLE_STATUSES

logger = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)
# A run stops after this and queues its continuation: under the django-q2
# task timeout (Q_CLUSTER["timeout"], 60 s), so a long sweep is never killed.
RUN_BUDGET_SECONDS = 40.0
# Runs that end in an error before the operation is marked failed.
MAX_ATTEMPTS = 5
UNFINISHED = (Operation.State.PENDING, Operation.State.RUNNING)


@dataclass(frozen=True)
class SweepResult:
    """What a cancel or delete request did: the counts of an inline sweep,
    or the background operation that does it."""

    cancelled_jobs: int = 0
    deleted_jobs: int = 0
    operation: Operation | None = None


def sweep_size(batch: Batch, kind: str) -> int:
    """How many jobs the sweep of this kind has to go through (kept counts)."""
    counts = batch_status_counts([batch.pk])[batch.pk]
    if kind == Operation.Kind.INACTIVE_SWEEP:
        statuses: tuple[str, ...] = services.batch_sweep_statuses(batch)
    else:
        statuses = tuple(CANCELLABLE_STATUSES)
    size = sum(counts.get(str(s), 0) for s in statuses)
    if kind == Operation.Kind.DELETE_JOBS:
        size += sum(counts.values())  # then every row is removed
    return size


def _unfinished(batch: Batch, kind: str) -> Operation | None:
    return (
        Operation.objects.filter(batch=batch, kind=kind, state__in=UNFINISHED)
        .order_by("id")
        .first()
    )


def operation_start(
    *, batch: Batch, kind: str, actor: Actor, reason: str = "", total: int
) -> Operation:
    """Record a background sweep and queue it once the caller's transaction
    commits. An unfinished one of the same kind for the batch is returned
    instead of starting a second."""
    existing = _unfinished(batch, kind)
    if existing is not None:
        return existing
    operation = Operation.objects.create(
        account_id=batch.account_id,
        batch=batch,
        batch_public_id=batch.batch_id,
        kind=kind,
        reason=reason[:255],
        total=total,
        **actor.audit_fields(),
    )
    logger.info(
        "operation started",
        extra={
            "action": "operation.started",
            "operation_id": str(operation.operation_id),
            "kind": kind,
            "batch_id": batch.batch_id,
            "total": total,
            "source": actor.source,
        },
    )
    transaction.on_commit(lambda: enqueue(operation.pk))
    return operation


def enqueue(operation_pk: int) -> None:
    from django_q.tasks import async_task

    async_task(
        "batches.tasks.run_operation",
        operation_pk,
        task_name=f"operation-{operation_pk}",
    )


def batch_cancel_request(
    *, batch: Batch, actor: Actor, reason: str = services.BATCH_CANCELLED_REASON
) -> SweepResult:
    """``batch_cancel`` for the API and the admin: inline up to
    ``SWEEP_INLINE_MAX_JOBS`` jobs, in the background above."""
    with transaction.atomic():
        locked = services.batch_cancel_flip(batch=batch, actor=actor, reason=reason)
        size = sweep_size(locked, Operation.Kind.CANCEL)
        if size > settings.SWEEP_INLINE_MAX_JOBS:
            return SweepResult(
                operation=operation_start(
                    batch=locked,
                    kind=Operation.Kind.CANCEL,
                    actor=actor,
                    reason=reason,
                    total=size,
                )
            )
    cancelled = services.batch_cancel_jobs(batch=locked, reason=reason)
    services.record_jobs_cancelled(
        locked, actor=actor, cancelled=cancelled, reason=reason
    )
    return SweepResult(cancelled_jobs=cancelled)


def batch_delete_request(
    *, batch: Batch, actor: Actor, delete_jobs: bool = False
) -> SweepResult:
    """``batch_delete`` for the API and the admin, as ``batch_cancel_request``."""
    kind = Operation.Kind.DELETE_JOBS if delete_jobs else Operation.Kind.DELETE
    with transaction.atomic():
        locked = services.batch_delete_flip(
            batch=batch, actor=actor, delete_jobs=delete_jobs
        )
        size = sweep_size(locked, kind)
        if size > settings.SWEEP_INLINE_MAX_JOBS:
            return SweepResult(
                operation=operation_start(
                    batch=locked,
                    kind=kind,
                    actor=actor,
                    reason=services.BATCH_DELETED_REASON,
                    total=size,
                )
            )
    cancelled = services.batch_cancel_jobs(
        batch=locked, reason=services.BATCH_DELETED_REASON
    )
    deleted = services.delete_jobs_sweep(batch=locked) if delete_jobs else 0
    return SweepResult(cancelled_jobs=cancelled, deleted_jobs=deleted)


def inactive_sweep_start(*, batch: Batch, actor: Actor, reason: str) -> Operation:
    """``cancel_inactive_batch_jobs --async``: the same sweep as
    ``batch_cancel_inactive_jobs``, as a background operation."""
    with transaction.atomic():
        kind = Operation.Kind.INACTIVE_SWEEP
        return operation_start(
            batch=batch,
            kind=kind,
            actor=actor,
            reason=reason,
            total=sweep_size(batch, kind),
        )


# --- Running one ----------------------------------------------------------------


def _take(operation_pk: int) -> bool:
    """Hold the operation for one run, unless another run holds it or it is
    finished: one conditional UPDATE, so two runs never sweep at once."""
    return bool(
        Operation.objects.filter(pk=operation_pk, state__in=UNFINISHED)
        .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=Now()))
        .update(
            state=Operation.State.RUNNING,
            lease_expires_at=Now() + LEASE,
            attempts=F("attempts") + 1,
            started_at=Coalesce(F("started_at"), Now()),
            updated_at=Now(),
        )
    )


def _actor(operation: Operation) -> Actor:
    return Actor(
        source=operation.source,
        user=operation.actor,
        remote_addr=operation.remote_addr,
        label=operation.actor_label,
    )


def _save_progress(operation: Operation, **fields: Any) -> None:
    Operation.objects.filter(pk=operation.pk).update(
        lease_expires_at=Now() + LEASE, updated_at=Now(), **fields
    )
    for name, value in fields.items():
        setattr(operation, name, value)


def _log(operation: Operation, message: str, action: str, **fields: Any) -> None:
    logger.info(
        message,
        extra={
            "action": action,
            "operation_id": str(operation.operation_id),
            "kind": operation.kind,
            "batch_id": operation.batch_public_id,
            "done": operation.done,
            "total": operation.total,
            **fields,
        },
    )


def operation_run(
    operation_pk: int,
    *,
    budget_seconds: float | None = None,
    after_chunk: Callable[[Operation], None] | None = None,
) -> str | None:
    """Sweep for one run: until done, or until the time budget is spent (then
    the continuation is queued). Returns the state it left, or None when the
    operation was finished or held by another run. ``after_chunk`` is called
    after each chunk's progress is saved (the tests use it)."""
    if not _take(operation_pk):
        return None
    operation = Operation.objects.select_related("actor").get(pk=operation_pk)
    batch = None
    if operation.batch_id is not None:
        batch = Batch.all_objects.filter(pk=operation.batch_id).first()
    if batch is None:
        _fail(operation, "the batch no longer exists")
        return Operation.State.FAILED
    deadline = time.monotonic() + (
        RUN_BUDGET_SECONDS if budget_seconds is None else budget_seconds
    )
    stopped: list[str] = []

    def guard() -> bool:
        if time.monotonic() >= deadline:
            stopped.append("budget")
            return False
        if operation.kind == Operation.Kind.INACTIVE_SWEEP and (
            not services.batch_still_inactive(batch.pk)
        ):
            stopped.append("resumed")
            return False
        return True

    def progress_of(field: str) -> Callable[[int], None]:
        base_done, base = operation.done, getattr(operation, field)

        def progress(n: int) -> None:
            _save_progress(operation, done=base_done + n, **{field: base + n})
            if after_chunk is not None:
                after_chunk(operation)

        return progress

    _log(operation, "operation running", "operation.running")
    try:
        statuses: Any = CANCELLABLE_STATUSES
        if operation.kind == Operation.Kind.INACTIVE_SWEEP:
            statuses = services.batch_sweep_statuses(batch)
        reason = operation.reason or services.BATCH_CANCELLED_REASON
        services.batch_cancel_jobs(
            batch=batch,
            reason=reason,
            statuses=statuses,
            progress=progress_of("cancelled_jobs"),
            guard=guard,
        )
        if operation.kind == Operation.Kind.DELETE_JOBS and not stopped:
            services.delete_jobs_sweep(
                batch=batch, progress=progress_of("deleted_jobs"), guard=guard
            )
    except Exception as exc:
        return _error(operation, exc)
    if stopped == ["budget"]:
        # Let the continuation take it at once, and queue it.
        Operation.objects.filter(pk=operation.pk).update(
            lease_expires_at=Now(), updated_at=Now()
        )
        _log(operation, "operation continues in a new run", "operation.continued")
        transaction.on_commit(lambda: enqueue(operation.pk))
        return Operation.State.RUNNING
    return _succeed(operation, batch, skipped=bool(stopped))


def _succeed(operation: Operation, batch: Batch, *, skipped: bool) -> str:
    now = timezone.now()
    with transaction.atomic():
        # Everything is swept: the bar ends full, whatever finished meanwhile
        # by itself (a call that ended, a job a worker completed).
        done = operation.done if skipped else max(operation.done, operation.total)
        Operation.objects.filter(pk=operation.pk).update(
            state=Operation.State.SUCCEEDED,
            done=done,
            finished_at=now,
            lease_expires_at=None,
            updated_at=now,
        )
        operation.state, operation.done = Operation.State.SUCCEEDED, done
        if operation.kind in (Operation.Kind.CANCEL, Operation.Kind.INACTIVE_SWEEP):
            changes: dict[str, Any] = {"operation": str(operation.operation_id)}
            if operation.kind == Operation.Kind.INACTIVE_SWEEP:
                changes["statuses"] = list(services.batch_sweep_statuses(batch))
            services.record_jobs_cancelled(
                batch,
                actor=_actor(operation),
                cancelled=operation.cancelled_jobs,
                reason=operation.reason,
                changes=changes,
            )
    _log(
        operation,
        "operation succeeded",
        "operation.succeeded",
        cancelled_jobs=operation.cancelled_jobs,
        deleted_jobs=operation.deleted_jobs,
        stopped_because_resumed=skipped,
    )
    return Operation.State.SUCCEEDED


def _error(operation: Operation, exc: Exception) -> str:
    message = (str(exc).strip().splitlines() or [repr(exc)])[0][:500]
    logger.warning(
        "operation run failed",
        exc_info=True,
        extra={
            "action": "operation.error",
            "operation_id": str(operation.operation_id),
            "attempt": operation.attempts,
            "error": message,
        },
    )
    errors = [*operation.errors, {"at": timezone.now().isoformat(), "error": message}]
    attempts = Operation.objects.values_list("attempts", flat=True).get(pk=operation.pk)
    if attempts >= MAX_ATTEMPTS:
        _fail(operation, message, errors=errors)
        return Operation.State.FAILED
    # The lease is left to expire: the resume schedule tries again.
    _save_progress(operation, errors=errors)
    return Operation.State.RUNNING


def _fail(
    operation: Operation, message: str, *, errors: list[Any] | None = None
) -> None:
    errors = errors or [
        *operation.errors,
        {"at": timezone.now().isoformat(), "error": message},
    ]
    now = timezone.now()
    Operation.objects.filter(pk=operation.pk).update(
        state=Operation.State.FAILED,
        errors=errors,
        finished_at=now,
        lease_expires_at=None,
        updated_at=now,
    )
    operation.state, operation.errors = Operation.State.FAILED, errors
    _log(operation, "operation failed", "operation.failed", error=message)


def operations_resume() -> int:
    """Queue every unfinished operation that no run holds: killed runs (lease
    expired) and queued tasks that were lost. Returns how many were queued."""
    stale = Now() - LEASE
    pks = list(
        Operation.objects.filter(state__in=UNFINISHED)
        .filter(
            Q(state=Operation.State.RUNNING, lease_expires_at__lt=Now())
            | Q(state=Operation.State.PENDING, created_at__lt=stale)
        )
        .order_by("created_at")
        .values_list("pk", flat=True)
    )
    for pk in pks:
        logger.info(
            "operation resumed",
            extra={"action": "operation.resumed", "operation": pk},
        )
        enqueue(pk)
    return len(pks)
