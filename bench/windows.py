"""9. Calling windows and every rule: what the rules cost the claim.

Half of BENCH_WINDOWS_JOBS jobs (1,000,000 by default) are in a batch whose
calling window is closed now (it opens on one day of the week, three days
from today, in every zone); they are imported through ``jobs_import``, which
parks each one as ``scheduled`` at its window's next opening, out of the
claim index (the section checks that every one of them was parked). That
batch has the highest priority. The other half are pending in an open batch
below every other (it has every rule on, as the rules account below).

Claimers run the worker's own path (``ours``: claim_jobs, reserve, the dial
gate with every rule, record, settle), 8 of them for
BENCH_WINDOWS_CLAIM_SECONDS per run, each run on a fresh batch of its own
above the open one. Two comparisons, each in ABBA order, the ratio taken
within each pair and then the median:

* every rule on / no rules (target >= 0.8x):

  - ``rules``: the closed batch is active (every claim meets the parked half
    first), and the run's batch and account have every rule the gate
    enforces set: a calling window that is open now but not all day (a few
    hours around the recipients' local time; within four hours of their
    midnight, an all-day window on today and tomorrow only), the account's
    holidays (ten dates, none today), 10,000 numbers on the account's
    do-not-call list and 10,000 on the system-wide list (none of them the
    run's), voice ``ai`` with ``consent_at`` on every job, a per-batch and a
    per-account ``max_concurrent_calls`` (64 and 128: each claim takes the
    caps' advisory locks and counts the calls in progress), the per-number
    caps (one call at a time, 3 per 24 h), a retry policy and a circuit
    breaker (read only in a round where a call failed; the bench's calls
    all answer);
  - ``none``: no rules, as far as the code allows: the run's batch is in an
    account with no holidays, no do-not-call entry on either list (the
    system-wide entries are deleted for the run), no concurrency caps, voice
    ``human`` (no consent needed), an all-day window every day, no breaker;
    the closed batch and the open one are paused. The gate still runs
    every rule's check (it cannot be switched off) and the per-number caps
    (they always hold; every number is fresh, so neither ever stops a job).

* the window alone (``outside`` / ``absent``, target >= 0.8x): the run's
  batch is in a third account with no rules but the all-day window;
  ``outside`` has the closed batch active, ``absent`` paused.

A claim that finds nothing tries again until the run's time is up (a capped
batch's advisory lock turns a concurrent claim away).

``--quick`` defaults to 20,000 jobs and 1.5 s runs.
"""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta
from zoneinfo import ZoneInfo

from django.db import connection
from django.utils import timezone

from bench import claimers, datagen
from bench.context import Context
from bench.report import median

SECTION = "9 windows"
CLAIMERS = 8
IMPORT_CHUNK = 100_000
DNC_ENTRIES = 10_000
# The run batches' numbers (bench.datagen.insert_jobs) are in San Francisco.
RECIPIENT_ZONE = ZoneInfo("America/Los_Angeles")
BATCH_CAP = 64
ACCOUNT_CAP = 128
BREAKER = {"window": 20, "max_failure_ratio": 0.5}
RETRY_POLICY = {"busy": {"retry": True, "delay_seconds": 300}}


def _size(name: str, full: float, quick: float, ctx: Context) -> float:
    raw = os.environ.get(name, "")
    return float(raw) if raw else (quick if ctx.quick else full)


def _closed_window() -> dict[str, object]:
    """Open all day on one day only, three days from now: closed now in
    every zone, whatever the hour of the run."""
    from jobs.rules.windows import DAYS

    day = (timezone.now() + timedelta(days=3)).weekday()
    return {"start": "00:00", "end": "24:00", "days": [DAYS[day]]}


def _import_outside(batch_pk: int, count: int) -> float:
    """``count`` jobs through the real import into the closed batch."""
    from batches.models import Batch
    from callcenter.actor import Actor
    from jobs.imports import jobs_import, rows_from_json

    batch = Batch.objects.get(pk=batch_pk)
    actor = Actor.system("bench")
    t0 = time.monotonic()
    for start in range(0, count, IMPORT_CHUNK):
        rows = [
            {"phone_number": f"+1212{2000000 + i:07d}"}
            for i in range(start, min(count, start + IMPORT_CHUNK))
        ]
        result = jobs_import(
            batch=batch,
            rows=rows_from_json(rows),
            actor=actor,
            max_rows=IMPORT_CHUNK,
        )
        if not result.ok or result.pending:
            raise RuntimeError(f"import: {result.errors[:3]} pending={result.pending}")
    return time.monotonic() - t0


def _set_active(*pks: int, active: bool) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE batches_batch SET is_active = %s WHERE id = ANY(%s)",
            [active, list(pks)],
        )


def _open_window() -> dict[str, object]:
    """Open now in the recipients' zone, not all day: a few hours around
    their local time, or (near their midnight) all day on today and
    tomorrow only."""
    from jobs.rules.windows import DAYS

    local = timezone.now().astimezone(RECIPIENT_ZONE)
    if 3 <= local.hour < 20:
        return {
            "start": f"{local.hour - 3:02d}:00",
            "end": f"{local.hour + 4:02d}:00",
            "days": list(DAYS),
        }
    today = local.weekday()
    return {
        "start": "00:00",
        "end": "24:00",
        "days": [DAYS[today], DAYS[(today + 1) % 7]],
    }


def _rules_account() -> int:
    """An account with every rule of its own set (see the module)."""
    from accounts.models import Account

    pk = datagen.create_account("bench-rules")
    today = timezone.now().date()
    Account.objects.filter(pk=pk).update(
        holidays=[(today + timedelta(days=30 * k)).isoformat() for k in range(1, 11)],
        max_calls_per_number_per_24h=3,
        max_concurrent_calls=ACCOUNT_CAP,
    )
    # Numbers of the parked half (+1 212 ...), never the runs' (+1 415 ...).
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO jobs_dncentry (account_id, phone_number, source, note,
                created_at)
            SELECT %s, '+1' || (2122000000 + g)::text, 'api', 'bench', now()
              FROM generate_series(0, %s - 1) AS g
            """,
            [pk, DNC_ENTRIES],
        )
    return pk


def _system_dnc(on: bool) -> None:
    """The system-wide list: 10,000 entries for a ``rules`` run, none else."""
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM jobs_dncentry WHERE account_id IS NULL")
        if on:
            cursor.execute(
                """
                INSERT INTO jobs_dncentry (account_id, phone_number, source,
                    note, created_at)
                SELECT NULL, '+1' || (2122100000 + g)::text, 'api', 'bench',
                       now()
                  FROM generate_series(0, %s - 1) AS g
                """,
                [DNC_ENTRIES],
            )


def _with_every_rule(batch_pk: int) -> None:
    """The batch's own rules and consent on each of its jobs."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE batches_batch
               SET calling_window = %s::jsonb, voice = 'ai',
                   max_concurrent_calls = %s, breaker = %s::jsonb,
                   retry_policy = %s::jsonb
             WHERE id = %s
            """,
            [
                json.dumps(_open_window()),
                BATCH_CAP,
                json.dumps(BREAKER),
                json.dumps(RETRY_POLICY),
                batch_pk,
            ],
        )
        cursor.execute(
            "UPDATE jobs_job SET consent_at = now() WHERE batch_id = %s", [batch_pk]
        )


def _order(reps: int) -> list[str]:
    """Pairs of each comparison in ABBA order, the two comparisons
    interleaved: rules none | absent outside | none rules | outside absent."""
    order: list[str] = []
    for i in range(reps):
        first = i % 2 == 0
        order += ["rules", "none"] if first else ["none", "rules"]
        order += ["absent", "outside"] if first else ["outside", "absent"]
    return order


def _pair_ratios(
    order: list[str], sequence: list[float], top: str, bottom: str
) -> list[float]:
    ratios = []
    for i in range(0, len(order) - 1, 2):
        pair = dict(zip(order[i : i + 2], sequence[i : i + 2], strict=True))
        if pair.get(top) and pair.get(bottom):
            ratios.append(pair[top] / pair[bottom])
    return ratios


def run(ctx: Context) -> None:
    total = int(_size("BENCH_WINDOWS_JOBS", 1_000_000, 20_000, ctx))
    seconds = _size("BENCH_WINDOWS_CLAIM_SECONDS", 5.0, 1.5, ctx)
    reps = 1 if ctx.quick else 5
    half = total // 2

    datagen.truncate_jobs()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE jobs_dncentry")
    rules_account = _rules_account()
    plain_account = datagen.create_account("bench-windows")
    none_account = datagen.create_account("bench-no-rules")
    [closed] = datagen.create_batches(
        rules_account,
        1,
        active=True,
        prefix="win-closed",
        priority=1000,
        window=_closed_window(),
    )
    [open_pk] = datagen.create_batches(rules_account, 1, active=True, prefix="win-open")
    datagen.insert_jobs(rules_account, [open_pk], half)
    _with_every_rule(open_pk)
    import_seconds = _import_outside(closed, half)
    from jobs.models import Job, JobStatus

    parked = Job.objects.filter(batch_id=closed, status=JobStatus.SCHEDULED).count()
    datagen.vacuum_analyze()

    per_run = max(2000, int(seconds * 4000))
    order = _order(reps)
    modes = ("rules", "none", "outside", "absent")
    rates: dict[str, list[float]] = {mode: [] for mode in modes}
    sequence: list[float] = []
    loads: list[float] = []
    options = {"url": ctx.dbs.url}
    account_of = {
        "rules": rules_account,
        "none": none_account,
        "outside": plain_account,
        "absent": plain_account,
    }
    for i, mode in enumerate(order):
        [pk] = datagen.create_batches(
            account_of[mode], 1, active=True, prefix=f"win-run-{i}", priority=100
        )
        datagen.insert_jobs(account_of[mode], [pk], per_run, start=10**8 + i * per_run)
        if mode == "rules":
            _with_every_rule(pk)
        _system_dnc(mode == "rules")
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE jobs_job")
        _set_active(closed, active=mode in ("rules", "outside"))
        _set_active(open_pk, active=mode != "none")
        loads.append(os.getloadavg()[0])
        try:
            run_ = claimers.drain(
                "ours", CLAIMERS, options=options, seconds=seconds, until_empty=False
            )
        finally:
            _set_active(closed, open_pk, active=True)
        if run_.errors:
            raise RuntimeError(run_.errors[0])
        rates[mode].append(run_.rate)
        sequence.append(run_.rate)
        _set_active(pk, active=False)
    _system_dnc(False)
    # Every one of them must still be parked, never claimed nor dialled.
    dialled_outside = (
        Job.objects.filter(batch_id=closed)
        .exclude(status=JobStatus.SCHEDULED, attempts=0, claimed_at__isnull=True)
        .count()
    )
    # The rules stopped nothing in the rules runs: the rate is of calls.
    stopped = (
        Job.objects.filter(account_id=rules_account)
        .exclude(batch_id=closed)
        .filter(status__in=[JobStatus.SCHEDULED, JobStatus.CANCELLED])
        .count()
    )

    rule_ratios = _pair_ratios(order, sequence, "rules", "none")
    window_ratios = _pair_ratios(order, sequence, "outside", "absent")
    rule_ratio = median(rule_ratios) if rule_ratios else None
    window_ratio = median(window_ratios) if window_ratios else None
    ctx.report.raw["windows"] = {
        "jobs": total,
        "outside_jobs": half,
        "parked_by_import": parked,
        "import_seconds": round(import_seconds, 1),
        "claim_rates": rates,
        "claim_order": order,
        "claim_seconds": seconds,
        "loadavg_before_runs": [round(x, 2) for x in loads],
        "rules_window": _open_window(),
        "dialled_outside_window": dialled_outside,
        "stopped_in_rules_runs": stopped,
    }

    def runs(top: str, bottom: str) -> str:
        picked = [
            f"{mode[0]}{round(rate)}"
            for mode, rate in zip(order, sequence, strict=True)
            if mode in (top, bottom)
        ]
        return " ".join(picked)

    ctx.report.add(
        SECTION,
        f"claim rate with every rule on, {half:,} of {total:,} jobs outside"
        f" their window / with no rules, {CLAIMERS} claimers (ours: claim +"
        " dial gate)",
        median(rates["rules"]),
        "jobs/s",
        target=">= 0.8x",
        passed=rule_ratio is not None and rule_ratio >= 0.8,
        ratio=rule_ratio,
        note=f"pairs {[round(r, 2) for r in rule_ratios]}; no rules"
        f" {round(median(rates['none']))} jobs/s; runs (r/n) {runs('rules', 'none')}"
        f"; jobs the rules stopped {stopped}",
    )
    ctx.report.add(
        SECTION,
        f"claim rate with {half:,} of {total:,} jobs outside their window /"
        f" without them, {CLAIMERS} claimers (ours: claim + dial gate)",
        median(rates["outside"]),
        "jobs/s",
        target=">= 0.8x",
        passed=window_ratio is not None and window_ratio >= 0.8,
        ratio=window_ratio,
        note=f"pairs {[round(r, 2) for r in window_ratios]}; runs (o/a)"
        f" {runs('outside', 'absent')}; import parked {parked:,}"
        f" of {half:,} in {import_seconds:.1f} s",
    )
    ctx.report.add(
        SECTION,
        "jobs outside their window that were claimed or dialled",
        dialled_outside,
        "",
        target="0",
        passed=dialled_outside == 0 and parked == half,
    )
