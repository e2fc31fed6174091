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
    scale_quota: int
    latency_samples: int
    control_requests: int
    control_big_batch: int
    import_rows: int
    memory_calls: int


FULL = Sizes(
    reps=3,
    claimers=(1, 2, 4, 8),
    throughput_jobs=5000,
    throughput_seconds=1.5,
    scale_small=10_000,
    scale_large=1_000_000,
    scale_quota=600,
    latency_samples=30,
    control_requests=100,
    control_big_batch=1_000_000,
    import_rows=100_000,
    memory_calls=10_000,
)

QUICK = Sizes(
    reps=1,
    claimers=(1, 4),
    throughput_jobs=1000,
    throughput_seconds=1.0,
    scale_small=2_000,
    scale_large=20_000,
    scale_quota=100,
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
