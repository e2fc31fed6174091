"""9. Calling windows: jobs outside their window cost the claim nothing.

Half of BENCH_WINDOWS_JOBS jobs (1,000,000 by default) are in a batch whose
calling window is closed now (it opens on one day of the week, three days
from today, in every zone); they are imported through ``jobs_import``, which
parks each one as ``scheduled`` at its window's next opening, out of the
claim index (the section checks that every one of them was parked). That
batch has the highest priority. The other half are pending in an open
(all-day) batch, and each claim run drains a fresh open batch above it.

Claimers run the worker's own path (``ours``: claim_jobs, reserve, the dial
gate with its calling-window rule, record, settle), 8 of them for
BENCH_WINDOWS_CLAIM_SECONDS, in ABBA order:

* ``outside``: the closed batch is active, so every claim meets it first
  (one probe for a pending job: it has none);
* ``absent``: the closed batch is paused, so no claim sees it at all.

The ratio outside/absent within each pair, then the median, carries the
target (>= 0.8x, the issue's figure for every rule at once; this section
isolates the window).

``--quick`` defaults to 20,000 jobs and 1.5 s runs.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta

from django.db import connection
from django.utils import timezone

from bench import claimers, datagen
from bench.context import Context
from bench.report import median

SECTION = "9 windows"
CLAIMERS = 8
IMPORT_CHUNK = 100_000


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


def _set_active(pk: int, active: bool) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE batches_batch SET is_active = %s WHERE id = %s", [active, pk]
        )


def run(ctx: Context) -> None:
    total = int(_size("BENCH_WINDOWS_JOBS", 1_000_000, 20_000, ctx))
    seconds = _size("BENCH_WINDOWS_CLAIM_SECONDS", 5.0, 1.5, ctx)
    reps = 1 if ctx.quick else 5
    half = total // 2

    datagen.truncate_jobs()
    account = datagen.create_account("bench-windows")
    [closed] = datagen.create_batches(
        account,
        1,
        active=True,
        prefix="win-closed",
        priority=1000,
        window=_closed_window(),
    )
    [open_pk] = datagen.create_batches(account, 1, active=True, prefix="win-open")
    datagen.insert_jobs(account, [open_pk], half)
    import_seconds = _import_outside(closed, half)
    from jobs.models import Job, JobStatus

    parked = Job.objects.filter(batch_id=closed, status=JobStatus.SCHEDULED).count()
    datagen.vacuum_analyze()

    per_run = max(2000, int(seconds * 4000))
    order = [("outside", "absent")[(i // 2 + i) % 2] for i in range(2 * reps)]
    rates: dict[str, list[float]] = {"outside": [], "absent": []}
    sequence: list[float] = []
    options = {"url": ctx.dbs.url}
    for i, mode in enumerate(order):
        [pk] = datagen.create_batches(
            account, 1, active=True, prefix=f"win-run-{i}", priority=100
        )
        datagen.insert_jobs(account, [pk], per_run, start=10**8 + i * per_run)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE jobs_job")
        _set_active(closed, mode == "outside")
        try:
            run_ = claimers.drain("ours", CLAIMERS, options=options, seconds=seconds)
        finally:
            _set_active(closed, True)
        if run_.errors:
            raise RuntimeError(run_.errors[0])
        rates[mode].append(run_.rate)
        sequence.append(run_.rate)
        _set_active(pk, False)
    # Every one of them must still be parked, never claimed nor dialled.
    dialled_outside = (
        Job.objects.filter(batch_id=closed)
        .exclude(status=JobStatus.SCHEDULED, attempts=0, claimed_at__isnull=True)
        .count()
    )

    ratios = []
    for i in range(0, len(order) - 1, 2):
        pair = dict(zip(order[i : i + 2], sequence[i : i + 2], strict=True))
        if pair.get("outside") and pair.get("absent"):
            ratios.append(pair["outside"] / pair["absent"])
    ratio = median(ratios) if ratios else None
    ctx.report.raw["windows"] = {
        "jobs": total,
        "outside_jobs": half,
        "parked_by_import": parked,
        "import_seconds": round(import_seconds, 1),
        "claim_rates": rates,
        "claim_order": order,
        "claim_seconds": seconds,
        "dialled_outside_window": dialled_outside,
    }
    ctx.report.add(
        SECTION,
        f"claim rate with {half:,} of {total:,} jobs outside their window /"
        f" without them, {CLAIMERS} claimers (ours: claim + dial gate)",
        median(rates["outside"]),
        "jobs/s",
        target=">= 0.8x",
        passed=ratio is not None and ratio >= 0.8,
        ratio=ratio,
        note=f"pairs {[round(r, 2) for r in ratios]}; runs {order}:"
        f" {[round(r) for r in sequence]} jobs/s; import parked {parked:,}"
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
