"""Claiming jobs: the one statement every worker runs to take work.

On PostgreSQL the claim is ``select_for_update(skip_locked=True)`` over jobs
whose batch is active (``batch__is_active``) or that have no batch, written as
one raw statement (``transitions.CLAIM_SQL``, beside every other write of a
job's status) so that it can lock the *batch* rows too and walk the partial
indexes lazily:

* one-off jobs (no batch) come first, by job priority then age, through
  ``job_claim_nobatch_idx``;
* then active, unfinished batches that have a pending job, in priority order,
  through ``batch_claim_idx`` (paused, cancelled, completed and deleted
  batches are not in that index, so their backlog is never walked), each
  locked ``FOR SHARE SKIP LOCKED``; for each, its pending jobs by job
  priority then age through ``job_claim_idx`` (finished jobs are not in it),
  locked ``FOR UPDATE SKIP LOCKED``;
* the outer ``LIMIT`` stops the nested loop as soon as enough jobs are found,
  and the same statement's ``UPDATE ... RETURNING`` marks them claimed.

Why ``FOR SHARE`` on the batch row makes pause exact: ``batch_pause``,
``batch_cancel`` and ``batch_delete`` lock the batch row ``FOR UPDATE``. A
claim that already holds the share lock makes the pause wait until the claim
has committed; a claim that arrives while the pause holds its lock skips the
batch; a claim whose snapshot predates the pause but locks the row after it
committed re-reads the row (EvalPlanQual) and sees ``is_active = false``. So
once a pause has returned, no claim can commit a job of that batch (the test
that proves it: docs/architecture.md#why-pause-is-exact).

The claim's commit does not wait for its WAL flush (``synchronous_commit``
is turned off inside the statement, for its own transaction only). That is
safe because nothing is dialled on the strength of a claim alone: the worker's
next write, ``mark_dialed``, commits normally, and PostgreSQL flushes WAL in
order, so the claim is durable before any call is placed. A claim lost in a
server crash left nothing behind: its jobs are simply pending again. It saves
one disk flush per claim, which is most of a claim's cost when the server is
otherwise idle.

Scheduled jobs are made pending by ``promote_due_jobs`` (the worker runs it
at least once a second), so the claim itself only looks at ``pending``.

On SQLite (the zero-setup ``make run``) there is no row locking; writers are
serialized instead, so the claim is a conditional UPDATE over a sub-select,
done in an IMMEDIATE transaction, and read back by its claim token.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.db.models.functions import Now
from django.utils import timezone

from callcenter import metrics
from jobs import transitions
from jobs.caps import caps_room_orm
from jobs.models import Job, JobStatus
from jobs.notify import notify_jobs_available

logger = logging.getLogger(__name__)

def _lease(lease_seconds: int | None) -> int:
    return int(lease_seconds or settings.JOB_LEASE_SECONDS)


def claim_jobs(
    *,
    worker_id: str,
    limit: int,
    lease_seconds: int | None = None,
    token: str = "",
) -> list[Job]:
    """Claim up to ``limit`` pending jobs for ``worker_id``, in one statement.

    Equivalent to ``Job.objects.select_for_update(skip_locked=True)`` filtered
    on ``batch__is_active`` (or no batch) plus a conditional update, except
    that it also share-locks the batch rows, which is what makes pause exact.

    The claim commits on return (autocommit), before any call is dialled.
    Returned jobs are ``in_progress``, with ``claimed_by``, ``claim_token``
    (the worker process's own, which every later write matches),
    ``claimed_at`` and ``lease_expires_at`` set and ``dialed_at`` cleared.
    """
    if limit <= 0:
        return []
    if connection.vendor != "postgresql":
        with metrics.CLAIM_SECONDS.time():
            jobs = _claim_jobs_conditional_update(
                worker_id=worker_id,
                token=token,
                limit=limit,
                lease_seconds=_lease(lease_seconds),
            )
        metrics.JOBS_CLAIMED.inc(len(jobs))
        return jobs
    # The statement (jobs/transitions.py) is prepared once per limit.
    with metrics.CLAIM_SECONDS.time():
        claimed = transitions.claim(
            limit=limit,
            worker_id=worker_id,
            token=token,
            lease=_lease(lease_seconds),
        )
    metrics.JOBS_CLAIMED.inc(len(claimed))
    return claimed


def claimable_jobs() -> Q:
    """Jobs a claim may take: pending, in an active unfinished batch or none."""
    return Q(status=JobStatus.PENDING) & (
        Q(batch__isnull=True)
        | Q(batch__is_active=True, batch__completed_at__isnull=True)
    )


def _claim_jobs_conditional_update(
    *, worker_id: str, token: str, limit: int, lease_seconds: int
) -> list[Job]:
    """The claim for databases without SKIP LOCKED (SQLite).

    One UPDATE whose WHERE re-checks the batch's ``is_active`` and the job's
    status in the same statement; SQLite runs one writer at a time (settings
    open transactions IMMEDIATE), so no pause can interleave with it.
    """
    # settings open SQLite transactions IMMEDIATE: the write lock is held from
    # BEGIN, so the selected ids cannot change under us before the UPDATE.
    now = timezone.now()
    with transaction.atomic():
        ordered = Job.objects.filter(claimable_jobs()).order_by(
            F("batch__priority").desc(nulls_first=True), "-priority", "id"
        )
        if not ordered.filter(
            Q(batch__max_concurrent_calls__isnull=False)
            | Q(account__max_concurrent_calls__isnull=False)
        ).exists():
            ids = list(ordered.values_list("id", flat=True)[:limit])
        else:
            # The concurrency caps (jobs/caps.py); demo sizes only.
            ids = caps_room_orm(
                list(ordered.values_list("id", "batch_id", "account_id")), limit
            )
        if not ids:
            return []
        transitions.update(
            "claim",
            claimable_jobs(),
            id__in=ids,
            values={
                "claimed_by": worker_id,
                "claim_token": token,
                "claimed_at": now,
                "lease_expires_at": now + timedelta(seconds=lease_seconds),
                "dialed_at": None,
                "call_id": "",
                "updated_at": now,
            },
        )
        return list(
            Job.objects.filter(
                id__in=ids,
                status=JobStatus.IN_PROGRESS,
                claimed_by=worker_id,
                claim_token=token,
                claimed_at=now,
            ).order_by("id")
        )


def promote_due_jobs(*, limit: int = 1000) -> int:
    """Make scheduled jobs whose time has come pending, and wake the workers.

    Walks ``job_due_idx`` only; ``SKIP LOCKED`` lets several workers promote at
    once without waiting for each other.
    """
    if connection.vendor != "postgresql":
        with transaction.atomic():
            ids = list(
                Job.objects.filter(
                    status=JobStatus.SCHEDULED, scheduled_at__lte=Now()
                ).values_list("id", flat=True)[:limit]
            )
            if not ids:
                return 0
            return transitions.update(
                "promote", id__in=ids, values={"updated_at": Now()}
            )
    with transaction.atomic():
        promoted = transitions.promote_due(limit=limit)
        if promoted:
            notify_jobs_available()
    return promoted
