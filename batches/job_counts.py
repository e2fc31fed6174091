"""Per-batch job counts by status: read, verify, repair.

How they are kept (PostgreSQL)
------------------------------
Statement-level triggers on ``jobs_job`` (``AFTER INSERT / UPDATE / DELETE``
with transition tables, and ``AFTER TRUNCATE``; installed by
``jobs/migrations/0007_job_counts.py``) group each statement's changed rows
by batch and status and add the difference to ``batches_batchjobcount``, in
the same transaction as the change. A batch's count in a status is the sum of
its rows in that table.

Why triggers and not the services: every writer of ``jobs_job`` (the claim,
the worker's finish, lease recovery, imports, cancel and delete sweeps, the
credit logic, retention, and whatever is added later) is counted without a
line of its code knowing about counts, and no writer can forget. A claim
stays one statement, one round trip: the trigger runs inside it. A statement
that changes no status or batch (heartbeats, dial marks) writes nothing.

Why slots: one counter row per (batch, status) would be updated by every
claim of that batch, and 8 claimers would queue on it until each commits.
Each transaction instead takes a *slot* of its own (one of 32, owned through
a transaction-level advisory lock, first tried at ``pid % 32``) and adds to
the rows of that slot only. No two open transactions share a slot, so a
counter row is never locked by another open transaction: writers do not wait
for each other, and the counts cannot deadlock with the job-row locks. Only
when all 32 slots are taken at once does a writer wait for one.

On SQLite (the zero-setup ``make run``) there are no triggers: the same
selector counts with ``COUNT(*)``, which is fast at demo sizes.

Verification
------------
``job_count_drift`` compares the kept counts with ``COUNT(*)`` in one
statement, so both sides are read from one snapshot and work in flight can
show no false drift. ``job_counts_repair`` adds the difference to a slot of
its own: a correct delta committed by anybody else after that snapshot moves
both sides alike, so the correction is right whenever it lands. Repairs are
serialised by an advisory lock, so two of them never correct twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction

logger = logging.getLogger(__name__)

# The advisory-lock class of the count slots (see jobs/migrations/0007).
LOCK_CLASS = 0x636E7473
SLOTS = 32
REPAIR_LOCK = -1  # never a slot number

_DRIFT_SQL = """
WITH actual AS (
  SELECT batch_id, status, count(*) AS n
    FROM jobs_job
   WHERE batch_id IS NOT NULL {jobs_filter}
   GROUP BY batch_id, status
),
kept AS (
  SELECT batch_id, status, sum(n) AS n
    FROM batches_batchjobcount
   WHERE true {counts_filter}
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
INSERT INTO batches_batchjobcount AS c (batch_id, status, slot, n)
SELECT d.batch_id, d.status, batch_job_count_slot(), d.n
  FROM unnest(%s::bigint[], %s::text[], %s::bigint[]) AS d(batch_id, status, n)
 ORDER BY d.batch_id, d.status
ON CONFLICT (batch_id, status, slot) DO UPDATE SET n = c.n + EXCLUDED.n
"""

# Rows of batches that no longer exist (removed from a shell; a job row
# cannot outlive its batch, so they count nothing once repaired).
_PURGE_ORPHANS_SQL = """
DELETE FROM batches_batchjobcount c
 WHERE NOT EXISTS (SELECT 1 FROM batches_batch b WHERE b.id = c.batch_id)
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

    One index range per batch over at most 32 slots per status, whatever the
    batch's size. PostgreSQL only.
    """
    ids = list(batch_ids)
    result: dict[int, dict[str, int]] = {pk: {} for pk in ids}
    if not ids:
        return result
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT batch_id, status, sum(n) FROM batches_batchjobcount"
            " WHERE batch_id = ANY(%s) GROUP BY batch_id, status",
            [ids],
        )
        for batch_id, status, n in cursor.fetchall():
            result[batch_id][status] = int(n)
    return result


def counts_are_kept() -> bool:
    """True where the triggers keep the counts (PostgreSQL)."""
    return connection.vendor == "postgresql"


def job_count_drift(batch_pks: Iterable[int] | None = None) -> list[Drift]:
    """Every (batch, status) whose kept count differs from ``COUNT(*)``.

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
        params = [pks, pks]
    with connection.cursor() as cursor:
        cursor.execute(
            _DRIFT_SQL.format(jobs_filter=jobs_filter, counts_filter=counts_filter),
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
