"""Caps: one call at a time per number, calls per number per 24 hours, and
calls in progress per batch and per account (docs/architecture.md#caps).

**One call at a time per number, across every account, batch and worker.**
A partial unique index on ``jobs_job (phone_number) WHERE status =
'in_progress' AND dialed_at IS NOT NULL`` (``job_one_call_per_number``)
holds exactly the numbers in a call. The dial mark skips a number already
in it, and two dial marks racing for the same number cannot both commit:
the second waits for the first and gets a unique violation, after which the
gate runs again and sees the first.

**Calls per number per rolling 24 hours, per account**
(``Account.max_calls_per_number_per_24h``, default 3). Every dial mark
inserts a ``CallAttempt`` row, with the job's account, in the same
statement. The mark counts the
account's dials of the number in the last 24 hours and skips the job when
the cap is reached. The count cannot race: the number's dial marks are
serialised by the unique index above (a second mark of the number waits
for the first, fails and re-runs with a snapshot that includes it).

The dial gate (jobs/rules/gate.py) adds these checks to its mark statement
(``MARK_CTES``). Jobs the mark skips are deferred, not failed
(``defer_blocked``, in the gate's transaction): back to ``scheduled`` until
the cap lets them through, audited, with no attempt spent and their credit
reservation refunded.

**Calls in progress per batch and per account** (``max_concurrent_calls``
on each; empty: no cap). Enforced inside the claim by
``callcenter_cap_room()`` (``CAP_ROOM_FUNCTION``): for a capped batch it
takes a transaction-level advisory lock without waiting (busy: another
claim is taking this batch's jobs, so this one skips it and goes on to
other batches), counts the batch's jobs in progress with a fresh snapshot
(the function is VOLATILE, so each of its queries sees every claim
committed before the lock was granted), and lets the claim take at most
the room left. The same for the account. A tally kept in a
transaction-local setting accounts for rooms already granted within the
same claim statement (two batches of one account).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Count
from django.db.models.functions import Now
from django.utils import timezone

from jobs import transitions
from jobs.models import CallAttempt, Job, JobStatus
from jobs.rules import Defer, Reason

logger = logging.getLogger(__name__)

# A job skipped because its number is in a call elsewhere is tried again
# after this long (or when the frequency cap allows, if that is later).
NUMBER_BUSY_RETRY = timedelta(seconds=60)
FREQUENCY_WINDOW = timedelta(hours=24)
ONE_CALL_PER_NUMBER = "job_one_call_per_number"
# The explain codes of the caps (GET /api/v1/jobs/{id}/explain).
FREQUENCY_CAP = "frequency_cap"
CONCURRENCY_CAP = "concurrency_cap"

# Advisory-lock classes of the concurrency caps ('capb', 'capa'); the job
# counts use 'cnts' and imports 'jobs'.
BATCH_LOCK_CLASS = 0x63617062
ACCOUNT_LOCK_CLASS = 0x63617061

CAP_ROOM_FUNCTION = f"""
CREATE OR REPLACE FUNCTION callcenter_cap_room(
    p_batch bigint, p_batch_cap integer,
    p_account bigint, p_account_cap integer, p_want integer)
RETURNS integer LANGUAGE plpgsql VOLATILE AS $$
-- How many more jobs of this batch (and account) a claim may take now.
-- VOLATILE: each query below takes a fresh snapshot, so it sees every claim
-- committed before the advisory lock was granted (jobs/caps.py).
DECLARE
  room integer := p_want;
  taken integer;
  promised jsonb := COALESCE(
    NULLIF(current_setting('callcenter.cap_promised', true), ''), '{{}}')::jsonb;
  bkey text := 'b' || p_batch;
  akey text := 'a' || p_account;
BEGIN
  IF p_batch_cap IS NOT NULL THEN
    IF NOT pg_try_advisory_xact_lock(
        {BATCH_LOCK_CLASS}, mod(p_batch, 2147483647)::integer) THEN
      RETURN 0;
    END IF;
    SELECT count(*) INTO taken FROM (
      SELECT 1 FROM jobs_job
       WHERE batch_id = p_batch AND status = 'in_progress'
       LIMIT p_batch_cap) s;
    room := LEAST(room,
      p_batch_cap - taken - COALESCE((promised ->> bkey)::integer, 0));
  END IF;
  IF p_account_cap IS NOT NULL AND room > 0 THEN
    IF NOT pg_try_advisory_xact_lock(
        {ACCOUNT_LOCK_CLASS}, mod(p_account, 2147483647)::integer) THEN
      RETURN 0;
    END IF;
    SELECT count(*) INTO taken FROM (
      SELECT 1 FROM jobs_job
       WHERE account_id = p_account AND status = 'in_progress'
       LIMIT p_account_cap) s;
    room := LEAST(room,
      p_account_cap - taken - COALESCE((promised ->> akey)::integer, 0));
  END IF;
  room := GREATEST(room, 0);
  IF room > 0 THEN
    IF p_batch_cap IS NOT NULL THEN
      promised := jsonb_set(promised, ARRAY[bkey],
        to_jsonb(COALESCE((promised ->> bkey)::integer, 0) + room));
    END IF;
    IF p_account_cap IS NOT NULL THEN
      promised := jsonb_set(promised, ARRAY[akey],
        to_jsonb(COALESCE((promised ->> akey)::integer, 0) + room));
    END IF;
    PERFORM set_config('callcenter.cap_promised', promised::text, true);
  END IF;
  RETURN room;
END $$;
"""

DROP_CAP_ROOM_FUNCTION = (
    "DROP FUNCTION IF EXISTS callcenter_cap_room(bigint, integer, bigint, integer, "
    "integer);"
)

# The number's caps, as CTEs of the dial gate's mark statement
# (jobs/rules/gate.py): of the jobs this worker process still holds, those
# whose number is not in a call and under its account's 24-hour cap, one
# job per number. The mark's UPDATE takes only these.
MARK_CTES = """
held AS (
  SELECT j.id, j.account_id, j.phone_number
    FROM jobs_job j
   WHERE j.id = ANY(%(ids)s::bigint[])
     AND j.status = 'in_progress'
     AND j.claimed_by = %(worker_id)s
     AND j.claim_token = %(token)s
     AND j.dialed_at IS NULL
),
allowed AS (
  SELECT DISTINCT ON (h.phone_number) h.id
    FROM held h
    JOIN accounts_account a ON a.id = h.account_id
   WHERE NOT EXISTS (
           SELECT 1 FROM jobs_job f
            WHERE f.phone_number = h.phone_number
              AND f.status = 'in_progress' AND f.dialed_at IS NOT NULL)
     AND (SELECT count(*) FROM (
            SELECT 1 FROM jobs_callattempt c
             WHERE c.account_pk = h.account_id
               AND c.phone_number = h.phone_number
               AND c.started_at > now() - interval '24 hours'
             LIMIT a.max_calls_per_number_per_24h) n
         ) < a.max_calls_per_number_per_24h
   ORDER BY h.phone_number, h.id
)"""

def is_number_conflict(exc: BaseException) -> bool:
    """Whether ``exc`` is the database refusing a second call to a number."""
    return ONE_CALL_PER_NUMBER in str(exc)


def defer_blocked(
    jobs: list[Job], *, worker_id: str, token: str = ""
) -> dict[int, Defer]:
    """Hand back claimed jobs the dial mark skipped because of a cap, in the
    gate's transaction: ``scheduled`` until the cap lets them through, no
    attempt spent, the claim released, audited (``deferred``, with the cap's
    code). The gate refunds their reservations after its commit. A job no
    longer held (cancelled since the claim) is left alone. Returns each
    deferred job's verdict."""
    from callcenter.actor import Actor
    from jobs.models import JobEvent

    if not jobs:
        return {}
    ids = [job.pk for job in jobs]
    rows: list[tuple[Any, ...]]
    if connection.vendor == "postgresql":
        rows = transitions.defer_blocked(
            ids=ids,
            worker_id=worker_id,
            token=token,
            busy_seconds=NUMBER_BUSY_RETRY.total_seconds(),
        )
    else:
        rows = _defer_orm(jobs, worker_id=worker_id, token=token)
    verdicts: dict[int, Defer] = {}
    for pk, until, in_call in rows:
        if in_call:
            verdicts[int(pk)] = Defer(
                CONCURRENCY_CAP, until, "the number is in another call"
            )
        else:
            verdicts[int(pk)] = Defer(
                FREQUENCY_CAP,
                until,
                "the account's calls to this number in 24 hours reached its cap",
            )
    actor = Actor.worker(worker_id)
    JobEvent.objects.bulk_create(
        JobEvent(
            job_id=job.pk,
            job_pk=job.pk,
            account_id=job.account_id,
            action="deferred",
            **actor.audit_fields(),
            changes={
                "status": [JobStatus.IN_PROGRESS, JobStatus.SCHEDULED],
                "code": verdicts[job.pk].code,
                "until": verdicts[job.pk].until.isoformat(),
            },
            reason=verdicts[job.pk].detail,
        )
        for job in jobs
        if job.pk in verdicts
    )
    for job in jobs:
        if job.pk in verdicts:
            transitions.reflect(job, "defer")
            job.scheduled_at = verdicts[job.pk].until
    return verdicts


def _defer_orm(
    jobs: list[Job], *, worker_id: str, token: str
) -> list[tuple[int, datetime, bool]]:
    deferred = []
    for job in jobs:
        in_call = number_in_call(job.phone_number, exclude_job=job.pk)
        until = max(
            frequency_cap_until(job) or timezone.now(),
            timezone.now() + NUMBER_BUSY_RETRY,
        )
        if transitions.update(
            "defer",
            pk=job.pk,
            claimed_by=worker_id,
            claim_token=token,
            dialed_at__isnull=True,
            values={
                "scheduled_at": until,
                "claimed_by": "",
                "claim_token": "",
                "claimed_at": None,
                "lease_expires_at": None,
                "updated_at": Now(),
            },
        ):
            deferred.append((job.pk, until, in_call))
    return deferred


def allowed_orm(jobs: list[Job]) -> list[Job]:
    """The number's caps for databases without row locks (SQLite, where the
    caller's IMMEDIATE transaction serialises writers): of ``jobs``, those
    whose number is not in a call and under its 24-hour cap, one per number."""
    now = timezone.now()
    allowed: list[Job] = []
    numbers: set[str] = set()
    for job in jobs:
        if job.phone_number in numbers:
            continue
        if number_in_call(job.phone_number) or frequency_cap_until(job, now=now):
            continue
        numbers.add(job.phone_number)
        allowed.append(job)
    return allowed


def number_in_call(phone_number: str, *, exclude_job: int | None = None) -> bool:
    """Whether the number is in a call now, for any account."""
    calls = Job.objects.filter(
        phone_number=phone_number,
        status=JobStatus.IN_PROGRESS,
        dialed_at__isnull=False,
    )
    if exclude_job is not None:
        calls = calls.exclude(pk=exclude_job)
    return calls.exists()


def frequency_cap_until(job: Job, *, now: datetime | None = None) -> datetime | None:
    """When the account's 24-hour cap lets this job's number be called
    again; None if it may be called now."""
    from accounts.models import Account

    now = now or timezone.now()
    cap = (
        Account.objects.filter(pk=job.account_id)
        .values_list("max_calls_per_number_per_24h", flat=True)
        .first()
    )
    if not cap:
        return None
    dials = list(
        CallAttempt.objects.filter(
            account_pk=job.account_id,
            phone_number=job.phone_number,
            started_at__gt=now - FREQUENCY_WINDOW,
        )
        .order_by("-started_at")
        .values_list("started_at", flat=True)[:cap]
    )
    if len(dials) < cap:
        return None
    return dials[cap - 1] + FREQUENCY_WINDOW


def concurrency_caps_reached(job: Job) -> list[str]:
    """Which of the job's concurrency caps are full now: "batch", "account"
    and "number" (the number is in a call)."""
    from accounts.models import Account

    full = []
    if job.batch_id is not None:
        # The batch's cap, read through the job (batches is a layer above).
        cap = (
            Job.objects.filter(pk=job.pk)
            .values_list("batch__max_concurrent_calls", flat=True)
            .first()
        )
        if cap is not None and (
            Job.objects.filter(
                batch_id=job.batch_id, status=JobStatus.IN_PROGRESS
            ).count()
            >= cap
        ):
            full.append("batch")
    cap = (
        Account.objects.filter(pk=job.account_id)
        .values_list("max_concurrent_calls", flat=True)
        .first()
    )
    if cap is not None and (
        Job.objects.filter(account_id=job.account_id, status=JobStatus.IN_PROGRESS)
        .exclude(pk=job.pk)
        .count()
        >= cap
    ):
        full.append("account")
    if number_in_call(job.phone_number, exclude_job=job.pk):
        full.append("number")
    return full


def caps_room_orm(
    candidates: list[tuple[int, int | None, int]], limit: int
) -> list[int]:
    """The concurrency caps for the SQLite claim: of ``candidates`` (job id,
    batch id, account id) in claim order, the ids that fit, up to ``limit``."""
    from accounts.models import Account

    # The batches' caps, read through their jobs (batches is a layer above).
    batch_caps = {
        pk: cap
        for pk, cap in Job.objects.filter(
            batch_id__in={b for _, b, _ in candidates if b is not None},
            batch__max_concurrent_calls__isnull=False,
        )
        .order_by()
        .values_list("batch_id", "batch__max_concurrent_calls")
        .distinct()
        if pk is not None and cap is not None
    }
    account_caps = {
        pk: cap
        for pk, cap in Account.objects.filter(
            pk__in={a for _, _, a in candidates}
        ).values_list("pk", "max_concurrent_calls")
        if cap is not None
    }
    in_progress = Job.objects.filter(status=JobStatus.IN_PROGRESS).order_by()
    used: dict[tuple[str, int], int] = {}
    for kind, column, ids in (
        ("b", "batch_id", batch_caps),
        ("a", "account_id", account_caps),
    ):
        for pk, n in (
            in_progress.filter(**{f"{column}__in": ids})
            .values_list(column)
            .annotate(n=Count("id"))
            .values_list(column, "n")
        ):
            used[kind, pk] = n
    caps = {("a", k): v for k, v in account_caps.items()}
    caps.update({("b", k): v for k, v in batch_caps.items()})
    picked: list[int] = []
    for job_id, in_batch, in_account in candidates:
        if len(picked) >= limit:
            break
        keys = [key for key in (("a", in_account), ("b", in_batch)) if key in caps]
        if any(used.get(key, 0) >= caps[key] for key in keys):
            continue
        picked.append(job_id)
        for key in keys:
            used[key] = used.get(key, 0) + 1
    return picked


def explain(job: Job, now: datetime | None = None) -> list[Reason]:
    """Why the caps keep ``job`` from being called now, for the explain
    endpoint: ``frequency_cap`` (until when) and ``concurrency_cap``."""
    reasons = []
    until = frequency_cap_until(job, now=now)
    if until is not None:
        reasons.append(
            Reason(
                FREQUENCY_CAP,
                "The account's calls to this number in 24 hours reached its "
                "max_calls_per_number_per_24h.",
                until,
            )
        )
    full = concurrency_caps_reached(job)
    details = {
        "batch": "The batch's max_concurrent_calls calls are in progress.",
        "account": "The account's max_concurrent_calls calls are in progress.",
        "number": "The number is in another call.",
    }
    reasons.extend(Reason(CONCURRENCY_CAP, details[name]) for name in full)
    return reasons
