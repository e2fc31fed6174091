"""What every section gets: sizes for this run, the databases, the report."""

from __future__ import annotations

from dataclasses import dataclass

from bench.db import BenchDatabases
from bench.report import Report


@dataclass(frozen=True)
class Sizes:
    reps: int
    claimers: tuple[int, ...]
    throughput_jobs: int
    throughput_seconds: float
    scale_small: int
    scale_large: int
    scale_seconds: float
    latency_samples: int
    control_requests: int
    control_big_batch: int
    import_rows: int
    memory_calls: int


# Every throughput point: at least 5 repetitions of at least 5 s each; the
# backlog is large enough that no system drains it in 5 s.
FULL = Sizes(
    reps=5,
    claimers=(1, 2, 4, 8),
    throughput_jobs=40_000,
    throughput_seconds=5.0,
    scale_small=10_000,
    scale_large=1_000_000,
    scale_seconds=5.0,
    latency_samples=30,
    control_requests=100,
    control_big_batch=1_000_000,
    import_rows=100_000,
    memory_calls=10_000,
)

QUICK = Sizes(
    reps=2,
    claimers=(1, 4),
    throughput_jobs=4000,
    throughput_seconds=1.0,
    scale_small=2_000,
    scale_large=20_000,
    scale_seconds=1.0,
    latency_samples=5,
    control_requests=10,
    control_big_batch=5_000,
    import_rows=2_000,
    memory_calls=300,
)


@dataclass
class Context:
    dbs: BenchDatabases
    sizes: Sizes
    report: Report
    quick: bool
    # Throughput systems to run (None: all); for trying one section quickly.
    kinds: tuple[str, ...] | None = None
