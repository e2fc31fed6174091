"""12. The call-safety simulation at full size (jobs/tests/simulation.py).

BENCH_SIMULATION_JOBS jobs (100,000; 2,000 with ``--quick``) over a quarter
as many numbers in 11+ time zones, 8 ``run_call_worker`` processes
(``--concurrency 10``) for BENCH_SIMULATION_SECONDS (120; 20 with
``--quick``) while a controller adds do-not-call entries, pauses, resumes,
cancels, moves calling windows and kill -9s four workers; an account runs
out of credits. Then every call attempt and every dial in the dialer's own
log is checked against the rules in force when it was dialled. Target:
zero violations. SIMULATION_SEED replays a run; the seed is in the report.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bench import datagen
from bench.context import Context

SECTION = "12 simulation"


def run(ctx: Context) -> None:
    from jobs.tests.simulation import Config, World, database_url, seed_from_env

    jobs = int(
        os.environ.get("BENCH_SIMULATION_JOBS") or (2_000 if ctx.quick else 100_000)
    )
    seconds = float(
        os.environ.get("BENCH_SIMULATION_SECONDS") or (20 if ctx.quick else 120)
    )
    seed = seed_from_env()
    # Its workers claim from every active batch, so the batches the sections
    # before it leave behind would be dialled too (and counted as dials with
    # no attempt of the simulation's): start from no jobs at all.
    datagen.truncate_jobs()
    with tempfile.TemporaryDirectory(prefix="bench-simulation-") as tmp:
        world = World(
            Config(
                seed=seed,
                jobs=jobs,
                numbers=max(100, jobs // 4),
                workers=8,
                seconds=seconds,
                db_url=database_url(),
                workdir=Path(tmp),
                concurrency=10,
                kills=4,
            )
        )
        outcome = world.run()
    ctx.report.raw["simulation"] = {
        "seed": seed,
        "jobs": jobs,
        "seconds": seconds,
        "attempts": outcome.attempts,
        "dials": outcome.dials,
        "zones": outcome.zones,
        "changes": outcome.changes,
        "dialled_while_paused": outcome.dialled_while_paused,
        "violations": outcome.violations[:100],
    }
    ctx.report.add(
        SECTION,
        f"calls breaking a rule: {jobs:,} jobs, 8 workers, {seconds:.0f} s"
        f" (SIMULATION_SEED={seed})",
        len(outcome.violations),
        "",
        target="0",
        passed=not outcome.violations and outcome.attempts > 0,
        note=f"{outcome.attempts:,} attempts, {outcome.dials:,} dials logged,"
        f" {outcome.zones} zones, changes {outcome.changes}",
    )
