"""The dial gate: mark claimed jobs dialled and check every rule, in one
transaction (the rule modules are listed in ``jobs/rules/__init__.py``).

On PostgreSQL the mark and the read of every rule's data are one statement:
the ``UPDATE`` that sets ``dialed_at`` and spends the attempt returns the
marked rows joined to their account and batch, with each rule's columns.
Its snapshot is taken when the statement starts, inside the gate's
transaction, so any change committed before then (a DNC entry, a country
removed from the allow-list, a batch's voice changed) is seen by the rules.
The jobs the rules stop are then ended or deferred before the same
transaction commits: nobody, not even this worker's dialer, ever sees them
marked. A round where no rule stops a job costs BEGIN, the statement and
COMMIT.

The mark is the last commit before the dialer is asked to call, so it also
re-checks the jobs' batches under the lock that makes the claim exact
(``FOR SHARE`` on each batch row, jobs/claim.py): a job whose batch was
paused, cancelled or deleted since its claim is not marked but released
(``pending`` again, no attempt spent). A pause under way makes the mark wait
for its commit, then re-read the row.

The reservation of a stopped job is given back after the commit (as
``credits_settle`` always runs: its own transaction turns off the flush wait,
which the dial mark must not inherit).
"""

from __future__ import annotations

import functools
import logging
import secrets
import zlib
from datetime import datetime

from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce, Now
from django.utils import timezone

from callcenter.prepared import fetch_prepared
from jobs import caps, pacing, rules, transitions
from jobs.models import CallAttempt, Job, JobStatus
from jobs.rules import Defer, GateContext, Refuse
from jobs.rules.sqlvalues import timestamp

logger = logging.getLogger(__name__)

_JOINS = """
  JOIN accounts_account a ON a.id = j.account_id
  LEFT JOIN batches_batch b ON b.id = j.batch_id
"""


@functools.cache
def _statement() -> tuple[str, tuple[str, ...]]:
    cols = rules.columns()
    names = tuple(cols)
    select = "".join(f",\n       {sql} AS {name}" for name, sql in cols.items())
    # The number's caps (jobs/caps.py) choose which held jobs are marked.
    sql = f"""
WITH live AS (
  -- The batches of these jobs that are still active, locked FOR SHARE as
  -- the claim locks them: a pause, cancel or delete (FOR UPDATE) under way
  -- makes this wait for its commit and then re-check (module docstring).
  SELECT b.id
    FROM batches_batch b
   WHERE b.id IN (SELECT j.batch_id FROM jobs_job j
                   WHERE j.id = ANY(%(ids)s::bigint[]))
     AND b.is_active
     FOR SHARE OF b
), {caps.MARK_CTES.strip()},
marked AS (
  UPDATE jobs_job
     SET dialed_at = now(),
         attempts = attempts + 1,
         started_at = COALESCE(started_at, now()),
         updated_at = now()
    FROM allowed
   WHERE jobs_job.id = allowed.id
     AND status = 'in_progress'
     AND claimed_by = %(worker_id)s
     AND claim_token = %(token)s
     AND dialed_at IS NULL
     AND (batch_id IS NULL OR batch_id IN (SELECT id FROM live))
  RETURNING jobs_job.*
), attempt AS (
  INSERT INTO jobs_callattempt (
      job_id, attempt, account_pk, batch_pk, dialer, token, phone_number,
      worker_id, claim_token, claimed_at, provider_call_id, provider_status,
      answered_by, started_at, outcome, error, hangup_reason, events)
  SELECT id, attempts, account_id, batch_id, %(dialer)s,
         replace(gen_random_uuid()::text, '-', ''),
         phone_number, %(worker_id)s, %(token)s, claimed_at, '', '', '',
         dialed_at, '', '', '', '[]'::jsonb
    FROM marked
  RETURNING job_id, token
)
SELECT j.id, j.dialed_at, now(), t.token{select}
  FROM marked j
  JOIN attempt t ON t.job_id = j.id{_JOINS}"""
    return sql, names


@functools.cache
def _statement_name(sql: str) -> str:
    """Named after its text, which the rules' columns make."""
    return f"callcenter_mark_dialed_{zlib.crc32(sql.encode()):08x}"


@functools.cache
def _read_statement(count: int) -> tuple[str, tuple[str, ...]]:
    """The rules' read for databases without UPDATE ... RETURNING in a CTE
    (SQLite): the same columns, read after the mark in its transaction."""
    cols = rules.columns()
    select = "".join(f", {sql} AS {name}" for name, sql in cols.items())
    marks = ", ".join(["%s"] * count)
    sql = (
        f"SELECT j.id, j.dialed_at, CURRENT_TIMESTAMP, ''{select} FROM jobs_job j"
        f"{_JOINS} WHERE j.id IN ({marks})"
    )
    return sql, tuple(cols)


Marked = dict[int, tuple[datetime, str]]  # job id: (dialed_at, attempt token)


def _mark_postgresql(
    ids: list[int], worker_id: str, token: str, dialer: str
) -> tuple[Marked, GateContext]:
    sql, names = _statement()
    rows = fetch_prepared(
        _statement_name(sql),
        sql,
        {"ids": ids, "worker_id": worker_id, "token": token, "dialer": dialer},
    )
    return _context(rows, names)


def _mark_other(
    ids: list[int], worker_id: str, token: str, dialer: str
) -> tuple[Marked, GateContext]:
    now = timezone.now()
    # The number's caps (jobs/caps.py); SQLite serialises writers.
    ids = [job.pk for job in caps.allowed_orm(list(Job.objects.filter(id__in=ids)))]
    held = Job.objects.filter(
        Q(batch__isnull=True) | Q(batch__is_active=True),
        id__in=ids,
        status=JobStatus.IN_PROGRESS,
        claimed_by=worker_id,
        claim_token=token,
        dialed_at__isnull=True,
    )
    held.update(
        dialed_at=now,
        attempts=F("attempts") + 1,
        started_at=Coalesce(F("started_at"), Now()),
        updated_at=Now(),
    )
    marked = Job.objects.filter(
        id__in=ids, claimed_by=worker_id, claim_token=token, dialed_at=now
    ).values_list(
        "id", "attempts", "phone_number", "claimed_at", "account_id", "batch_id"
    )
    attempts = [
        CallAttempt(
            job_id=job_id,
            attempt=number,
            account_pk=account_id,
            batch_pk=batch_id,
            dialer=dialer,
            token=secrets.token_hex(16),
            phone_number=phone,
            worker_id=worker_id,
            claim_token=token,
            claimed_at=claimed_at,
            started_at=now,
        )
        for job_id, number, phone, claimed_at, account_id, batch_id in marked
    ]
    CallAttempt.objects.bulk_create(attempts)
    if not attempts:
        return {}, GateContext(now=now)
    sql, names = _read_statement(len(attempts))
    with connection.cursor() as cursor:
        cursor.execute(sql, [a.job_id for a in attempts])
        rows = cursor.fetchall()
    _, context = _context(rows, names)
    return {a.job_id: (now, a.token) for a in attempts}, GateContext(
        now=now, rows=context.rows
    )


def _context(
    rows: list[tuple[object, ...]], names: tuple[str, ...]
) -> tuple[Marked, GateContext]:
    dialed: Marked = {}
    data = {}
    now: datetime | None = None
    for row in rows:
        job_id = int(row[0])  # type: ignore[call-overload]
        dialed_at = timestamp(row[1])
        now = timestamp(row[2])
        assert dialed_at is not None
        dialed[job_id] = (dialed_at, str(row[3]))
        data[job_id] = dict(zip(names, row[4:], strict=True))
    return dialed, GateContext(now=now or timezone.now(), rows=data)


def mark_dialed(
    *,
    jobs: list[Job],
    worker_id: str,
    token: str = "",
    dialer: str = "",
    pace: pacing.Pacing | None = None,
    slot: pacing.Slot | None = None,
) -> list[Job]:
    """Mark these claimed jobs dialled (an attempt spent) and check every
    rule, in one transaction; return the jobs to dial now.

    A job no longer held by this worker process (cancelled since the claim)
    is dropped; a job a rule stops is ended or deferred (see the module).
    The mark writes each job's ``CallAttempt`` row (a fresh fencing token,
    ``job.attempt_token``) in the same statement; a stopped job's row is
    deleted before the commit: no call, no attempt.

    ``dialed_at`` is the database's clock, as ``claimed_at`` is: recovery
    compares both with the database's ``now()``, and a worker whose clock is
    off must not make a dial look older or newer than it is. On SQLite the
    database is a file on the worker's own machine, so its clock is the one.

    The number's caps (jobs/caps.py) keep the mark off a job whose number is
    in a call or at its 24-hour cap; such a job is deferred in the same
    transaction.

    ``pace``: the dialer's shared limits (jobs/pacing.py). Its concurrency
    cap is counted under the account's lock in this transaction, and the
    jobs beyond the room left are deferred, not marked. ``slot``: the send
    slot the worker waited for, kept on the attempts.
    """
    if not jobs:
        return []
    for _ in range(MARK_ATTEMPTS - 1):
        try:
            return _gate(
                jobs,
                worker_id=worker_id,
                token=token,
                dialer=dialer,
                pace=pace,
                slot=slot,
            )
        except IntegrityError as exc:
            # Two marks raced for one number (jobs/caps.py): this one waited
            # for the other's commit; run again, it sees that call.
            if not caps.is_number_conflict(exc):
                raise
            logger.info(
                "dial mark raced for a number: again",
                extra={"action": "job.mark_raced", "worker_id": worker_id},
            )
    return _gate(
        jobs, worker_id=worker_id, token=token, dialer=dialer, pace=pace, slot=slot
    )


# The code of a job whose batch stopped being active between its claim and
# its mark: it goes back to ``pending`` (for a resume, or for the sweep of a
# cancelled or deleted batch), with its reservation refunded.
BATCH_INACTIVE = "batch_inactive"


def _release_paused(jobs: list[Job], *, worker_id: str, token: str) -> set[int]:
    """Hand back held jobs the mark skipped because their batch is no longer
    active: ``pending`` again, the claim released, no attempt spent.
    Returns their ids."""
    candidates = [job.pk for job in jobs if job.batch_id is not None]
    if not candidates:
        return set()
    held = Job.objects.filter(
        id__in=candidates,
        status=JobStatus.IN_PROGRESS,
        claimed_by=worker_id,
        claim_token=token,
        dialed_at__isnull=True,
        batch__is_active=False,
    )
    # Locked first: the sweep of a cancelled batch may be cancelling them.
    ids = set(held.select_for_update(of=("self",)).values_list("id", flat=True))
    if ids:
        transitions.update(
            "release",
            values={
                "claimed_by": "",
                "claim_token": "",
                "claimed_at": None,
                "lease_expires_at": None,
                "updated_at": Now(),
            },
            id__in=ids,
        )
    return ids


# A mark that raced for a number runs again up to this many times in all;
# each retry follows the commit of the racing mark, so a few always suffice.
MARK_ATTEMPTS = 8


def _gate(
    jobs: list[Job],
    *,
    worker_id: str,
    token: str,
    dialer: str,
    pace: pacing.Pacing | None = None,
    slot: pacing.Slot | None = None,
) -> list[Job]:
    from accounts.credits import claim_key, credits_settle
    from jobs.lifecycle import fenced_write_refused
    from jobs.services import job_defer_dial, job_refuse_dial

    ids = [job.pk for job in jobs]
    stopped: list[tuple[Job, str]] = []  # and the code
    with transaction.atomic():
        full: dict[int, Defer] = {}
        if pace is not None and pace.max_concurrent is not None:
            # The provider account's concurrent calls: counted under its
            # lock, held until this commit (jobs/pacing.py).
            fits = pacing.room(pace, len(jobs))
            full.update(
                pacing.defer_for_capacity(
                    jobs[fits:], pacing=pace, worker_id=worker_id, token=token
                )
            )
            ids = [job.pk for job in jobs[:fits]]
        dialed_at: Marked
        if not ids:
            dialed_at, context = {}, GateContext(now=timezone.now())
        elif connection.vendor == "postgresql":
            dialed_at, context = _mark_postgresql(ids, worker_id, token, dialer)
        else:
            dialed_at, context = _mark_other(ids, worker_id, token, dialer)
        marked = []
        # Held, but the batch was paused, cancelled or deleted since the
        # claim: released, not dialled.
        paused = _release_paused(
            [job for job in jobs if job.pk not in dialed_at and job.pk not in full],
            worker_id=worker_id,
            token=token,
        )
        # Held, but a cap kept the mark off: deferred, not dialled.
        capped: dict[int, Defer] = dict(
            caps.defer_blocked(
                [
                    job
                    for job in jobs
                    if job.pk not in dialed_at
                    and job.pk not in paused
                    and job.pk not in full
                ],
                worker_id=worker_id,
                token=token,
            )
        )
        capped.update(full)
        for job in jobs:
            if job.pk in dialed_at:
                marked.append(job)
            elif job.pk in paused:
                stopped.append((job, BATCH_INACTIVE))
                logger.info(
                    "job not dialled: its batch is no longer active",
                    extra={
                        "action": "job.dial_released",
                        "job_id": job.pk,
                        "batch_id": job.batch_id,
                        "worker_id": worker_id,
                    },
                )
            elif job.pk in capped:
                stopped.append((job, capped[job.pk].code))
                logger.info(
                    "job not dialled: %s",
                    capped[job.pk].code,
                    extra={
                        "action": "job.dial_deferred",
                        "job_id": job.pk,
                        "batch_id": job.batch_id,
                        "worker_id": worker_id,
                        "code": capped[job.pk].code,
                        "until": capped[job.pk].until,
                    },
                )
            else:
                fenced_write_refused(
                    "dial", job_ids=[job.pk], worker_id=worker_id, token=token
                )
                logger.info(
                    "job not dialled: no longer held after the claim",
                    extra={
                        "action": "job.dial_skipped",
                        "job_id": job.pk,
                        "batch_id": job.batch_id,
                        "worker_id": worker_id,
                    },
                )
        found = rules.verdicts(marked, context) if context.rows else {}
        for job in marked:
            verdict = found.get(job.pk)
            if verdict is None:
                continue
            if isinstance(verdict, Refuse):
                done = job_refuse_dial(
                    job=job,
                    worker_id=worker_id,
                    token=token,
                    code=verdict.code,
                    reason=verdict.detail,
                    settle=False,
                )
            else:
                done = job_defer_dial(
                    job=job,
                    worker_id=worker_id,
                    token=token,
                    code=verdict.code,
                    until=verdict.until,
                    reason=verdict.detail,
                )
            CallAttempt.objects.filter(token=dialed_at[job.pk][1]).delete()
            stopped.append((job, verdict.code))
            logger.warning(
                "job not dialled: %s",
                verdict.code,
                extra={
                    "action": (
                        "job.dial_refused"
                        if isinstance(verdict, Refuse)
                        else "job.dial_deferred"
                    ),
                    "job_id": job.pk,
                    "batch_id": job.batch_id,
                    "worker_id": worker_id,
                    "code": verdict.code,
                    "reason": verdict.detail,
                    "until": getattr(verdict, "until", None),
                    "ended": done,
                },
            )
        if slot is not None:
            gone = {job.pk for job, _ in stopped}
            pacing.record_slot(
                [dialed_at[job.pk][1] for job in marked if job.pk not in gone], slot
            )
    for job, code in stopped:
        credits_settle(
            account_id=job.account_id,
            job_pk=job.pk,
            key=claim_key(job.claimed_at),
            cost=0,
            note=f"not dialled: {code}",
        )
    stopped_ids = {job.pk for job, _ in stopped}
    allowed = []
    for job in marked:
        if job.pk in stopped_ids:
            continue
        job.dialed_at, job.attempt_token = dialed_at[job.pk]
        job.attempts += 1
        allowed.append(job)
    return allowed
