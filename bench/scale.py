"""2. Scale independence: the claim rate at 1,000,000 jobs over the rate at
10,000, same run, same claimers.

Both datasets have the same shape: 40% finished, 60% pending, half of the
pending jobs in paused batches. Each repetition claims and completes the same
fixed number of jobs through our real path; both sizes have enough active
pending jobs for every repetition, so both see the same drift.
"""

from __future__ import annotations

from bench import claimers, datagen
from bench.context import Context
from bench.report import median

SECTION = "2 scale"
CLAIMERS = 4


def measure(ctx: Context, total: int, kind: str = "ours") -> dict[str, object]:
    datagen.truncate_jobs()
    dataset = datagen.history_shaped(total, slug=f"bench-scale-{total}")
    rates = []
    quota = max(1, ctx.sizes.scale_quota // CLAIMERS)
    for _ in range(ctx.sizes.reps):
        run = claimers.drain(kind, CLAIMERS, options={"url": ctx.dbs.url}, quota=quota)
        if run.errors:
            raise RuntimeError(run.errors[0])
        rates.append(run.rate)
    return {
        "jobs": dataset.total_jobs,
        "active_pending": dataset.active_pending,
        "rates": rates,
        "median": median(rates),
    }


def run(ctx: Context, kind: str = "ours") -> None:
    small = measure(ctx, ctx.sizes.scale_small, kind)
    large = measure(ctx, ctx.sizes.scale_large, kind)
    datagen.truncate_jobs()
    ctx.report.raw["scale"] = {"small": small, "large": large, "claimers": CLAIMERS}
    ratio = large["median"] / small["median"]
    ctx.report.add(
        SECTION, f"claim rate at {small['jobs']:,} jobs", small["median"], "jobs/s"
    )
    ctx.report.add(
        SECTION,
        f"claim rate at {large['jobs']:,} jobs",
        large["median"],
        "jobs/s",
        target=">= 0.8x the small rate",
        passed=ratio >= 0.8,
        ratio=ratio,
        note=f"{CLAIMERS} claimers; 40% finished, half of pending paused",
    )
