"""Per-batch job counts by status: read, fold, verify, repair.

How they are kept (PostgreSQL)
------------------------------
Statement-level triggers on ``jobs_job`` (``AFTER INSERT / UPDATE / DELETE``
with transition tables, and ``AFTER TRUNCATE``; installed by
``batches/migrations/0008_job_counts_fold.py``) group each statement's
changed rows by batch and *bucket* and append the difference to
``batches_batchjobcountdelta``, in the same transaction as the change.
``fold_job_counts()`` moves those rows into ``batches_batchjobcount`` (one
row per batch and bucket); workers call it about once a second. A batch's
count in a bucket is its row there plus its rows not yet folded, summed in
one statement, so a fold never changes what a reader sees.

Buckets are the job statuses, except that ``pending`` and ``in_progress``
share the bucket ``open``. The claim, the hottest statement there is, only
moves jobs from pending to in_progress, so it changes no count; it says so
inside its own statement (a transaction-local setting the trigger spends) and
the trigger skips it without reading its rows. ``in_progress`` is counted
live from ``job_batch_status_idx`` in the same statement as the kept counts:
it is bounded by the calls in flight, not by the batch's size, and
``pending`` is ``open`` less ``in_progress``.

Why triggers and not the services: every writer of ``jobs_job`` (the claim,
the worker's finish, lease recovery, imports, cancel and delete sweeps, the
credit logic, retention, and whatever is added later) is counted without a
line of its code knowing about counts, and no writer can forget.

Why appended rows and not counters: a counter row per (batch, status) would
be updated by every finish of that batch, and 8 workers would queue on it
until each commits. Appending never waits for another writer. (The first
version sharded the counters into 32 slots per batch; its upserts cost the
claimers about a third of their rate, see CHANGELOG.md.)

On SQLite (the zero-setup ``make run``) there are no triggers: the same
selector counts with ``COUNT(*)``, which is fast at demo sizes.

Verification
------------
``job_count_drift`` compares the kept counts with ``COUNT(*)`` (by bucket) in
one statement, so both sides are read from one snapshot and work in flight
can show no false drift. ``job_counts_repair`` appends the difference as a
change of its own: a correct change committed by anybody else after that
snapshot moves both sides alike, so the correction is right whenever it
lands. Repairs are serialised by an advisory lock, so two of them never
correct twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction

from jobs.counts import fold_job_counts

logger = logging.getLogger(__name__)

__all__ = [
    "Drift",
    "counts_are_kept",
    "fold_job_counts",
    "job_count_drift",
    "job_counts_repair",
    "kept_counts",
]

# The advisory-lock class of the counts (see batches/migrations/0008).
LOCK_CLASS = 0x636E7473
REPAIR_LOCK = -1
FOLD_LOCK = -2  # taken inside batch_job_counts_fold()

# The bucket pending and in_progress share; see "Buckets" above.
OPEN = "open"
_BUCKET = "CASE WHEN status IN ('pending', 'in_progress') THEN 'open' ELSE status END"

_DRIFT_SQL = """
WITH actual AS (
  SELECT batch_id, {bucket} AS status, count(*) AS n
    FROM jobs_job
   WHERE batch_id IS NOT NULL {jobs_filter}
   GROUP BY 1, 2
),
kept AS (
  SELECT batch_id, status, sum(n) AS n
    FROM (SELECT batch_id, status, n FROM batches_batchjobcount
           WHERE true {counts_filter}
          UNION ALL
          SELECT batch_id, status, n FROM batches_batchjobcountdelta
           WHERE true {counts_filter}) k
   GROUP BY batch_id, status
)
SELECT coalesce(a.batch_id, k.batch_id),
       coalesce(a.status, k.status),
       coalesce(a.n, 0),
       coalesce(k.n, 0)
  FROM actual a
  FULL JOIN kept k ON k.batch_id = a.batch_id AND k.status = a.status
 WHERE coalesce(a.n, 0) <> coalesce(k.n, 0)
 ORDER BY 1, 2
"""

_ADD_SQL = """
INSERT INTO batches_batchjobcountdelta (batch_id, status, n)
SELECT d.batch_id, d.status, d.n
  FROM unnest(%s::bigint[], %s::text[], %s::bigint[]) AS d(batch_id, status, n)
"""

# Rows of batches that no longer exist (removed from a shell; a job row
# cannot outlive its batch, so they count nothing once repaired).
_PURGE_ORPHANS_SQL = """
DELETE FROM batches_batchjobcount c
 WHERE NOT EXISTS (SELECT 1 FROM batches_batch b WHERE b.id = c.batch_id);
DELETE FROM batches_batchjobcountdelta c
 WHERE NOT EXISTS (SELECT 1 FROM batches_batch b WHERE b.id = c.batch_id);
"""

# The kept counts plus the live in_progress count, from one snapshot.
_KEPT_SQL = """
SELECT batch_id, status, sum(n)
  FROM (SELECT batch_id, status, n FROM batches_batchjobcount
         WHERE batch_id = ANY(%(ids)s)
        UNION ALL
        SELECT batch_id, status, n FROM batches_batchjobcountdelta
         WHERE batch_id = ANY(%(ids)s)
        UNION ALL
        SELECT batch_id, 'in_progress', count(*) FROM jobs_job
         WHERE batch_id = ANY(%(ids)s) AND status = 'in_progress'
         GROUP BY batch_id) k
 GROUP BY batch_id, status
"""


@dataclass(frozen=True)
class Drift:
    batch_pk: int
    status: str
    actual: int
    kept: int

    @property
    def delta(self) -> int:
        return self.actual - self.kept


def kept_counts(batch_ids: Iterable[int]) -> dict[int, dict[str, int]]:
    """The kept counts of these batches, by raw status (``done`` apart).

    One statement: per batch, one index range over its folded rows and its
    unfolded changes (about a second's worth), and one over its jobs in
    flight; none of it grows with the batch's size. PostgreSQL only.
    """
    ids = list(batch_ids)
    result: dict[int, dict[str, int]] = {pk: {} for pk in ids}
    if not ids:
        return result
    with connection.cursor() as cursor:
        cursor.execute(_KEPT_SQL, {"ids": ids})
        for batch_id, status, n in cursor.fetchall():
            result[batch_id][status] = int(n)
    for counts in result.values():
        opened = counts.pop(OPEN, 0)
        if opened or counts.get("in_progress"):
            counts["pending"] = opened - counts.get("in_progress", 0)
    return result


def counts_are_kept() -> bool:
    """True where the triggers keep the counts (PostgreSQL)."""
    return connection.vendor == "postgresql"


def job_count_drift(batch_pks: Iterable[int] | None = None) -> list[Drift]:
    """Every (batch, bucket) whose kept count differs from ``COUNT(*)``.

    Buckets are statuses, with pending and in_progress together as ``open``.

    Reads every job of the batches checked (all batches by default): a full
    scan of jobs_job, meant for the periodic check, not for a request.
    """
    if not counts_are_kept():
        return []
    params: list[Any] = []
    jobs_filter = counts_filter = ""
    if batch_pks is not None:
        pks = list(batch_pks)
        jobs_filter = "AND batch_id = ANY(%s)"
        counts_filter = "AND batch_id = ANY(%s)"
        params = [pks, pks, pks]
    with connection.cursor() as cursor:
        cursor.execute(
            _DRIFT_SQL.format(
                bucket=_BUCKET, jobs_filter=jobs_filter, counts_filter=counts_filter
            ),
            params,
        )
        return [Drift(int(b), s, int(a), int(k)) for b, s, a, k in cursor.fetchall()]


def job_counts_repair(batch_pks: Iterable[int] | None = None) -> list[Drift]:
    """Find drift and correct it; returns what was found (and fixed).

    Each drift is logged as a warning: the triggers keep the counts exact, so
    any drift means something wrote jobs_job around them (a trigger disabled
    by hand, a restore of one table) and deserves a look.
    """
    if not counts_are_kept():
        return []
    pks = None if batch_pks is None else list(batch_pks)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s, %s)", [LOCK_CLASS, REPAIR_LOCK]
            )
        drift = job_count_drift(pks)
        if drift:
            with connection.cursor() as cursor:
                cursor.execute(
                    _ADD_SQL,
                    [
                        [d.batch_pk for d in drift],
                        [d.status for d in drift],
                        [d.delta for d in drift],
                    ],
                )
        with connection.cursor() as cursor:
            cursor.execute(_PURGE_ORPHANS_SQL)
    for d in drift:
        logger.warning(
            "batch job count drift repaired",
            extra={
                "action": "batch_counts.repair",
                "batch_pk": d.batch_pk,
                "status": d.status,
                "actual": d.actual,
                "kept": d.kept,
            },
        )
    return drift
