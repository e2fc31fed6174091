"""2. Scale independence: the claim rate at 1,000,000 jobs over the rate at
10,000, same run, same claimers.

Both datasets have the same shape: 40% finished, 60% pending, half of the
pending jobs in paused batches. Each repetition claims and completes jobs
through our real path for the same time (at least 5 s in a full run); then
the jobs it finished are made pending again, their batches reopened and the
table vacuumed, so that every repetition starts from the same shape.
"""

from __future__ import annotations

from django.db import connection

from bench import before, claimers, datagen
from bench.context import Context
from bench.report import median, spread

SECTION = "2 scale"
CLAIMERS = 4


def measure(ctx: Context, total: int, kind: str = "ours") -> dict[str, object]:
    datagen.truncate_jobs()
    dataset = datagen.history_shaped(total, slug=f"bench-scale-{total}")
    rates = []
    for _ in range(ctx.sizes.reps):
        run = claimers.drain(
            kind,
            CLAIMERS,
            options={"url": ctx.dbs.url},
            seconds=ctx.sizes.scale_seconds,
        )
        if run.errors:
            raise RuntimeError(run.errors[0])
        if run.seconds < 0.95 * ctx.sizes.scale_seconds:
            ctx.report.missing.append(
                f"scale at {total:,} jobs: the active backlog ran out after"
                f" {run.seconds:.1f} s"
            )
        rates.append(run.rate)
        _restore(dataset)
    return {
        "jobs": dataset.total_jobs,
        "active_pending": dataset.active_pending,
        "rates": rates,
        "median": median(rates),
    }


def _restore(dataset: datagen.Dataset) -> None:
    """Make the jobs the last repetition claimed pending again."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE jobs_job SET status = 'pending', attempts = 0, claimed_by = '',
                claimed_at = NULL, lease_expires_at = NULL, dialed_at = NULL,
                call_id = '', started_at = NULL, finished_at = NULL, result = NULL,
                attempt_log = '[]'::jsonb, last_error = ''
            WHERE batch_id = ANY(%s) AND claimed_by <> ''
            """,
            [dataset.active_batches],
        )
        cursor.execute(
            "UPDATE batches_batch SET completed_at = NULL WHERE id = ANY(%s)",
            [dataset.active_batches],
        )
    datagen.vacuum_analyze()


def run(ctx: Context, kind: str = "ours") -> None:
    small = measure(ctx, ctx.sizes.scale_small, kind)
    large = measure(ctx, ctx.sizes.scale_large, kind)
    datagen.truncate_jobs()
    ctx.report.raw["scale"] = {"small": small, "large": large, "claimers": CLAIMERS}
    ratio = large["median"] / small["median"]
    ctx.report.add(
        SECTION,
        f"claim rate at {small['jobs']:,} jobs",
        small["median"],
        "jobs/s",
        spread=spread(small["rates"], "{:,.0f}"),
        key="scale:small",
        before=before.figure("same:claim rate at 10,000 jobs:jobs/s"),
    )
    # Paired by repetition, as the throughput ratios are.
    pairs = [a / b for a, b in zip(large["rates"], small["rates"], strict=True)]
    ratio = median(pairs)
    ctx.report.add(
        SECTION,
        f"claim rate at {large['jobs']:,} jobs",
        large["median"],
        "jobs/s",
        target=">= 0.8x the small rate",
        passed=ratio >= 0.8,
        ratio=ratio,
        note=f"{CLAIMERS} claimers, worker lifecycle; 40% finished, half of"
        f" pending paused; rates {spread(large['rates'], '{:,.0f}')}",
        spread=spread(pairs, "{:.2f}"),
        key="scale:large",
        before=before.figure("same:claim rate at 1,000,000 jobs"),
    )
