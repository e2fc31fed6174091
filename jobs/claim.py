"""Claiming jobs: the one statement every worker runs to take work.

On PostgreSQL the claim is ``select_for_update(skip_locked=True)`` over jobs
whose batch is active (``batch__is_active``) or that have no batch, written as
one raw statement so that it can lock the *batch* rows too and walk the
partial indexes lazily:

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

import functools
import logging
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.db.models.functions import Now
from django.utils import timezone

from callcenter import metrics
from callcenter.prepared import fetch_prepared
from jobs.caps import caps_room_orm
from jobs.models import Job, JobStatus
from jobs.notify import notify_jobs_available

logger = logging.getLogger(__name__)

CLAIM_SQL = """
WITH async_commit AS (
  -- This statement's own transaction commits without waiting for its WAL
  -- flush; see "The claim's commit" above. And it changes no job count:
  -- pending and in_progress share a count bucket, so the count trigger is
  -- told to skip this statement (batches/job_counts.py).
  SELECT set_config('synchronous_commit', 'off', true),
         set_config('callcenter.counts_unchanged', 'on', true)
),
picked AS (
  SELECT u.id
    FROM (
      SELECT o.id
        FROM (
          SELECT j.id
            FROM jobs_job j
            JOIN accounts_account a ON a.id = j.account_id
           WHERE j.batch_id IS NULL AND j.status = 'pending'
             -- The account's concurrency cap (jobs/caps.py).
             AND (a.max_concurrent_calls IS NULL
                  OR callcenter_cap_room(NULL, NULL, a.id,
                                         a.max_concurrent_calls, 1) > 0)
           ORDER BY j.priority DESC, j.id
           LIMIT %(n)s
             FOR UPDATE OF j SKIP LOCKED
        ) o
      UNION ALL
      SELECT jj.id
        FROM (
          SELECT b.id,
                 -- The batch's and the account's concurrency caps: how many
                 -- jobs this claim may take (jobs/caps.py).
                 CASE WHEN b.max_concurrent_calls IS NULL
                           AND a.max_concurrent_calls IS NULL THEN %(n)s
                      ELSE callcenter_cap_room(b.id, b.max_concurrent_calls,
                                               a.id, a.max_concurrent_calls,
                                               %(n)s)
                 END AS room
            FROM batches_batch b
            JOIN accounts_account a ON a.id = b.account_id
           WHERE b.is_active AND b.completed_at IS NULL
             -- Lock only batches that have work: an active batch whose
             -- jobs are all running or waiting for a retry costs one probe.
             AND EXISTS (SELECT 1 FROM jobs_job p
                          WHERE p.batch_id = b.id AND p.status = 'pending')
           ORDER BY b.priority DESC, b.id
             FOR SHARE OF b SKIP LOCKED
        ) ab
        CROSS JOIN LATERAL (
          SELECT j.id
            FROM jobs_job j
           WHERE j.batch_id = ab.id AND j.status = 'pending'
           ORDER BY j.priority DESC, j.id
           LIMIT LEAST(%(n)s, ab.room)
             FOR UPDATE SKIP LOCKED
        ) jj
    ) u
   LIMIT %(n)s
)
UPDATE jobs_job
   SET status = 'in_progress',
       claimed_by = %(worker_id)s,
       claim_token = %(token)s,
       claimed_at = now(),
       lease_expires_at = now() + make_interval(secs => %(lease)s),
       dialed_at = NULL,
       call_id = '',
       updated_at = now()
  FROM picked, async_commit
 WHERE jobs_job.id = picked.id
RETURNING jobs_job.*
"""

PROMOTE_SQL = """
WITH due AS (
  SELECT id
    FROM jobs_job
   WHERE status = 'scheduled' AND scheduled_at <= now()
   ORDER BY scheduled_at
   LIMIT %(n)s
     FOR UPDATE SKIP LOCKED
)
UPDATE jobs_job
   SET status = 'pending', updated_at = now()
  FROM due
 WHERE jobs_job.id = due.id
RETURNING jobs_job.id
"""


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
    # The limit is written into the text, not bound: with ``LIMIT $1`` a
    # generic plan cannot know the limit is small and sorts every pending job
    # of the batch (30x slower). So there is one prepared claim per limit.
    limit = int(limit)
    with metrics.CLAIM_SECONDS.time():
        rows = fetch_prepared(
            f"callcenter_claim_{limit}",
            _claim_sql(limit),
            {"worker_id": worker_id, "token": token, "lease": _lease(lease_seconds)},
        )
    metrics.JOBS_CLAIMED.inc(len(rows))
    return [_job_from_row(row) for row in rows]


@functools.cache
def _claim_sql(limit: int) -> str:
    return CLAIM_SQL.replace("%(n)s", str(limit)).replace(
        "RETURNING jobs_job.*", _RETURNING
    )


_FIELDS = list(Job._meta.concrete_fields)
_ATTNAMES = [f.attname for f in _FIELDS]
# Named columns, in the fields' order: the table's column order may differ.
_RETURNING = "RETURNING " + ", ".join(f'jobs_job."{f.column}"' for f in _FIELDS)
_CONVERTED = [(i, f) for i, f in enumerate(_FIELDS) if hasattr(f, "from_db_value")]


def _job_from_row(row: tuple[object, ...]) -> Job:
    values = list(row)
    for i, f in _CONVERTED:
        values[i] = f.from_db_value(values[i], None, connection)
    return Job.from_db(connection.alias, _ATTNAMES, values)


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
        Job.objects.filter(claimable_jobs(), id__in=ids).update(
            status=JobStatus.IN_PROGRESS,
            claimed_by=worker_id,
            claim_token=token,
            claimed_at=now,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            dialed_at=None,
            call_id="",
            updated_at=now,
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
            return Job.objects.filter(id__in=ids, status=JobStatus.SCHEDULED).update(
                status=JobStatus.PENDING, updated_at=Now()
            )
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(PROMOTE_SQL, {"n": limit})
            promoted = cursor.rowcount
        if promoted:
            notify_jobs_available()
    return promoted
