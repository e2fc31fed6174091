"""Every change of a job's status, in one module.

A job's ``status`` is written here and nowhere else
(``jobs/tests/test_transitions.py`` checks the source tree for it). Each
change is one of the operations in ``TRANSITIONS``, which says from which
statuses it may start and which status it gives; the writers below apply
that guard:

* ``update``: one conditional ``UPDATE`` over the rows the caller names, with
  ``status`` in the operation's sources added to its ``WHERE``, so a job
  moved on by someone else meanwhile is left alone; returns the rows changed;
* ``save``: a row the caller has locked (``select_for_update``) and checked:
  its status must be one of the sources, or it is a programming error;
* the hand-written statements of the hot paths (the claim, the promotion of
  due jobs, the worker's record of successful calls, the caps' deferral, the
  batch sweep), each with the same guard in its SQL.

``reflect`` sets the status on a caller's copy of a job that one of these
writes has just changed, so it reads what was written.

Who calls what stays with the services (``jobs/services.py``,
``jobs/lifecycle.py``, ``jobs/claim.py``, ``jobs/billing.py``, ...): they
decide, lock, audit and signal; this module only writes the status, with
the guard.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Q

from callcenter.prepared import fetch_prepared
from jobs.models import CANCELLABLE_STATUSES, NON_TERMINAL_STATUSES, Job, JobStatus


@dataclass(frozen=True)
class Transition:
    """An operation on a job's status: allowed from ``sources``, to ``target``."""

    name: str
    sources: frozenset[str]
    target: str


class IllegalTransitionError(RuntimeError):
    """A transition asked of a job whose status does not allow it: the caller
    checked the wrong thing (a programming error, not a user's)."""


def _t(name: str, sources: Iterable[str], target: str) -> Transition:
    return Transition(name, frozenset(str(s) for s in sources), str(target))


P, S, R = JobStatus.PENDING, JobStatus.SCHEDULED, JobStatus.IN_PROGRESS

TRANSITIONS: dict[str, Transition] = {
    t.name: t
    for t in (
        # The worker: claim, promotion, the dial gate, outcomes, recovery.
        _t("claim", [P], R),
        _t("promote", [S], P),
        _t("complete", [R], JobStatus.COMPLETED),
        _t("retry", [R], S),
        _t("fail", [R], JobStatus.FAILED),
        # Claimed and not dialled (or dialled and never connected): back.
        _t("release", [R], P),
        # The dial gate or a cap: not now, at a later time.
        _t("defer", [R], S),
        # The dial gate: a rule refuses the call.
        _t("refuse", [R], JobStatus.CANCELLED),
        # Credits: a claimed job its account cannot pay for; queued jobs held
        # while the account cannot pay, and given back when it can.
        _t("suspend", [R], JobStatus.SUSPENDED),
        _t("hold_for_credits", [P, S], JobStatus.SUSPENDED),
        _t("restore", [JobStatus.SUSPENDED], P),
        _t("restore_scheduled", [JobStatus.SUSPENDED], S),
        # People (API, admin, DNC, opt-out) and batch sweeps.
        _t("cancel", NON_TERMINAL_STATUSES, JobStatus.CANCELLED),
        _t("sweep_cancel", CANCELLABLE_STATUSES, JobStatus.CANCELLED),
        _t("requeue", [JobStatus.FAILED, JobStatus.SUSPENDED], P),
    )
}

del P, S, R


def _transition(
    op: str, from_statuses: Iterable[str] | None = None
) -> tuple[Transition, list[str]]:
    t = TRANSITIONS[op]
    if from_statuses is None:
        return t, sorted(t.sources)
    narrowed = sorted({str(s) for s in from_statuses})
    if not set(narrowed) <= t.sources:
        raise IllegalTransitionError(
            f"{op} cannot start from {sorted(set(narrowed) - t.sources)}"
        )
    return t, narrowed


def _guard(statuses: list[str]) -> Q:
    return Q(status=statuses[0]) if len(statuses) == 1 else Q(status__in=statuses)


def update(
    op: str,
    *conditions: Q,
    values: dict[str, Any] | None = None,
    from_statuses: Iterable[str] | None = None,
    **where: Any,
) -> int:
    """Move the jobs matching ``conditions`` and ``where`` that are in one
    of ``op``'s sources (or of ``from_statuses``, a subset of them) to its
    target, with ``values`` written beside the status, in one conditional
    ``UPDATE``. Returns how many moved."""
    t, sources = _transition(op, from_statuses)
    return Job.objects.filter(_guard(sources), *conditions, **where).update(
        status=t.target, **(values or {})
    )


def save(job: Job, op: str, *, fields: Iterable[str] | None = None) -> None:
    """Move ``job``, a row the caller holds locked, by ``op`` and save it:
    ``status`` and ``fields`` (every field when None, as ``save()``)."""
    t, _ = _transition(op)
    if str(job.status) not in t.sources:
        raise IllegalTransitionError(f"job {job.pk}: {op} from {job.status}")
    job.status = t.target
    if fields is None:
        job.save()
    else:
        job.save(update_fields=["status", *(f for f in fields if f != "status")])


def reflect(job: Job, op: str) -> None:
    """``job`` (a caller's copy) was moved by ``op`` through one of the
    writers here: give it the status that was written."""
    job.status = TRANSITIONS[op].target


# --- Reading back the rows a statement moved ---------------------------------

_FIELDS = list(Job._meta.concrete_fields)
_ATTNAMES = [f.attname for f in _FIELDS]
# Named columns, in the fields' order: the table's column order may differ.
RETURNING = "RETURNING " + ", ".join(f'jobs_job."{f.column}"' for f in _FIELDS)
_CONVERTED = [(i, f) for i, f in enumerate(_FIELDS) if hasattr(f, "from_db_value")]


def job_from_row(row: tuple[object, ...]) -> Job:
    """A ``Job`` from a row of ``RETURNING`` (the fields' order)."""
    values = list(row)
    for i, f in _CONVERTED:
        values[i] = f.from_db_value(values[i], None, connection)
    return Job.from_db(connection.alias, _ATTNAMES, values)


# --- The claim (jobs/claim.py explains it): pending -> in_progress -----------

CLAIM_SQL = """
WITH async_commit AS (
  -- This statement's own transaction commits without waiting for its WAL
  -- flush; see "The claim's commit" in jobs/claim.py. And it changes no job
  -- count: pending and in_progress share a count bucket, so the count
  -- trigger is told to skip this statement (batches/job_counts.py).
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


@functools.cache
def _claim_sql(limit: int) -> str:
    return CLAIM_SQL.replace("%(n)s", str(limit)).replace(
        "RETURNING jobs_job.*", RETURNING
    )


def claim(*, limit: int, worker_id: str, token: str, lease: int) -> list[Job]:
    """The claim statement (PostgreSQL), prepared once per limit: the limit
    is written into the text, not bound (with ``LIMIT $1`` a generic plan
    cannot know the limit is small and sorts every pending job of the batch,
    30x slower)."""
    limit = int(limit)
    rows = fetch_prepared(
        f"callcenter_claim_{limit}",
        _claim_sql(limit),
        {"worker_id": worker_id, "token": token, "lease": lease},
    )
    return [job_from_row(row) for row in rows]


# --- Promotion of due jobs: scheduled -> pending ---------------------------

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


def promote_due(*, limit: int) -> int:
    """Make up to ``limit`` due scheduled jobs pending (PostgreSQL, in the
    caller's transaction); returns how many."""
    with connection.cursor() as cursor:
        cursor.execute(PROMOTE_SQL, {"n": limit})
        return int(cursor.rowcount)


# --- The worker's record of successful calls: in_progress -> completed -------

RECORD_SUCCESS_SQL = """
WITH done AS (
UPDATE jobs_job
   SET attempt_log = jobs_job.attempt_log || jsonb_build_array(
           i.entry::jsonb || jsonb_build_object('attempt', jobs_job.attempts)),
       result = i.result::jsonb || jsonb_build_object('attempt', jobs_job.attempts),
       call_id = CASE WHEN i.call_id <> '' THEN i.call_id ELSE jobs_job.call_id END,
       status = 'completed',
       lease_expires_at = NULL,
       finished_at = %(now)s,
       last_error = '',
       updated_at = %(now)s
  FROM unnest(%(ids)s::bigint[], %(entries)s::text[], %(results)s::text[],
              %(call_ids)s::text[], %(seen)s::text[], %(dialed)s::timestamptz[],
              %(outcomes)s::text[])
       AS i(id, entry, result, call_id, seen, dialed_at, outcome)
 WHERE jobs_job.id = i.id
   AND jobs_job.status = 'in_progress'
   AND jobs_job.claimed_by = %(worker_id)s
   AND jobs_job.claim_token = %(token)s
   AND jobs_job.dialed_at = i.dialed_at
   AND NOT jobs_job.attempt_log @> i.seen::jsonb
   -- A voicemail that the batch's retry policy retries takes the general path.
   AND (i.outcome <> 'voicemail' OR jobs_job.batch_id IS NULL OR NOT EXISTS (
         SELECT 1 FROM batches_batch b
          WHERE b.id = jobs_job.batch_id
            AND b.retry_policy @> '{{"voicemail": {{"retry": true}}}}'))
RETURNING {columns}
), attempt AS (
UPDATE jobs_callattempt
   SET outcome = a.outcome, ended_at = %(now)s, duration_seconds = a.duration,
       provider_call_id = CASE WHEN a.call_id <> '' THEN left(a.call_id, 64)
                               ELSE jobs_callattempt.provider_call_id END
  FROM unnest(%(ids)s::bigint[], %(attempt_tokens)s::text[], %(outcomes)s::text[],
              %(durations)s::float8[], %(call_ids)s::text[])
       AS a(id, token, outcome, duration, call_id)
 WHERE jobs_callattempt.token = a.token
   AND jobs_callattempt.ended_at IS NULL
   AND a.id IN (SELECT id FROM done)
)
SELECT * FROM done
"""


def complete_successes(params: dict[str, Any]) -> list[Job]:
    """The record of successful calls of a worker's round (PostgreSQL, one
    statement, its own transaction in autocommit); returns the jobs it
    completed (jobs/lifecycle.py ``_record_successes`` fills ``params``)."""
    sql = RECORD_SUCCESS_SQL.format(columns=RETURNING.removeprefix("RETURNING "))
    rows = fetch_prepared("callcenter_record_successes", sql, params)
    return [job_from_row(row) for row in rows]


# --- The caps' deferral (jobs/caps.py): in_progress -> scheduled -------------

# Where each job the mark skipped goes: the later of "the number is free"
# (if it is in a call, or was taken by another job of the same mark) and
# "the frequency cap lets it through" (when the oldest of the counted dials
# leaves the 24-hour window).
DEFER_BLOCKED_SQL = """
WITH blocked AS (
  SELECT j.id,
         GREATEST(
           CASE WHEN EXISTS (
                  SELECT 1 FROM jobs_job f
                   WHERE f.phone_number = j.phone_number
                     AND f.status = 'in_progress' AND f.dialed_at IS NOT NULL)
                THEN now() + make_interval(secs => %(busy)s) END,
           (SELECT c.started_at + interval '24 hours'
              FROM jobs_callattempt c
             WHERE c.account_pk = j.account_id
               AND c.phone_number = j.phone_number
               AND c.started_at > now() - interval '24 hours'
             ORDER BY c.started_at DESC
            OFFSET a.max_calls_per_number_per_24h - 1 LIMIT 1)
         ) AS until,
         EXISTS (
           SELECT 1 FROM jobs_job f
            WHERE f.phone_number = j.phone_number
              AND f.status = 'in_progress' AND f.dialed_at IS NOT NULL) AS in_call
    FROM jobs_job j
    JOIN accounts_account a ON a.id = j.account_id
   WHERE j.id = ANY(%(ids)s::bigint[])
     AND j.status = 'in_progress'
     AND j.claimed_by = %(worker_id)s
     AND j.claim_token = %(token)s
     AND j.dialed_at IS NULL
     FOR UPDATE OF j
)
UPDATE jobs_job
   SET status = 'scheduled',
       scheduled_at = COALESCE(blocked.until, now() + make_interval(secs => %(busy)s)),
       claimed_by = '',
       claim_token = '',
       claimed_at = NULL,
       lease_expires_at = NULL,
       updated_at = now()
  FROM blocked
 WHERE jobs_job.id = blocked.id
RETURNING jobs_job.id, jobs_job.scheduled_at, blocked.in_call
"""


def defer_blocked(
    *, ids: list[int], worker_id: str, token: str, busy_seconds: float
) -> list[tuple[Any, ...]]:
    """Defer the held, undialled jobs the dial mark skipped (PostgreSQL);
    returns (id, scheduled_at, in_call) for each."""
    with connection.cursor() as cursor:
        cursor.execute(
            DEFER_BLOCKED_SQL,
            {"ids": ids, "worker_id": worker_id, "token": token, "busy": busy_seconds},
        )
        return list(cursor.fetchall())


# --- A batch's sweep (batches/services.py): open statuses -> cancelled -------

SWEEP_CANCEL_SQL = """
WITH chunk AS (
    SELECT id FROM jobs_job
    WHERE batch_id = %(batch)s AND status = %(status)s AND id > %(after)s
    ORDER BY id
    LIMIT %(limit)s
), cancelled AS (
    UPDATE jobs_job AS j
    SET status = 'cancelled', cancel_reason = %(reason)s,
        finished_at = now(), updated_at = now()
    FROM chunk
    WHERE j.id = chunk.id AND j.status = %(status)s
    RETURNING j.id
)
SELECT (SELECT max(id) FROM chunk), (SELECT count(*) FROM cancelled)
"""


def sweep_cancel_chunk(
    *, batch_id: int, status: str, after: int, limit: int, reason: str
) -> tuple[int | None, int]:
    """Cancel the next ``limit`` jobs of the batch in ``status`` after id
    ``after`` (PostgreSQL, in the caller's transaction, whose commit does
    not wait for its flush: the sweep is idempotent, see batches/services.py).
    Returns the chunk's last id (None when there is none) and how many were
    cancelled: the ``j.status = …`` re-check skips a job a worker finished
    meanwhile."""
    _transition("sweep_cancel", [status])
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit = off")
        cursor.execute(
            SWEEP_CANCEL_SQL,
            {
                "batch": batch_id,
                "status": status,
                "after": after,
                "limit": limit,
                "reason": reason,
            },
        )
        last_id, cancelled = cursor.fetchone()
    return last_id, int(cancelled)
