"""8. Counts that do not grow with the batch.

Ten batches of BENCH_COUNTS_JOBS jobs each (1,000,000 by default; 60%
pending, 40% completed) in one account, and one batch of 100 jobs in another.
Through the real API on loopback (gunicorn), requests alternate between the
two, and each figure is a big-batch p99 set beside the same request's p99 on
the 100-job batch:

* PATCH ``{"is_active": false}`` (pause; a resume follows each, not timed);
* ``GET /api/v1/batches`` (ten 1M-job batches against one of 100 jobs);
* ``GET /api/v1/batches/{id}/stats``;
* ``GET /api/v1/batches/{id}/jobs?page=last``.

Then the claim rate of 8 ``ours-claim`` claimers (claim_jobs + the raw
finish) draining one batch, with the count triggers on and off, in ABBA
order; the ratio on/off carries the target. The runs with the triggers off
leave that batch's counts behind, and ``job_counts_repair`` puts them right
(which the section checks).

Sizes: BENCH_COUNTS_JOBS (jobs per big batch), BENCH_COUNTS_REQUESTS
(requests per figure and side), BENCH_COUNTS_CLAIM_SECONDS (per claim run).
``--quick`` defaults to 20,000 jobs, 30 requests and 1.5 s.
"""

from __future__ import annotations

import os
import time

from django.db import connection

from bench import claimers, datagen, server
from bench.context import Context
from bench.ours import Missing
from bench.report import median, percentile

SECTION = "8 counts"
BIG_BATCHES = 10
SMALL_JOBS = 100
CLAIMERS = 8
TRIGGERS = (
    "batch_job_counts_insert",
    "batch_job_counts_update",
    "batch_job_counts_delete",
)
# (figure, target p99 in ms for the big batch)
TARGETS = {
    "PATCH pause": 50.0,
    "GET /api/v1/batches": 100.0,
    "GET stats": 20.0,
    "GET jobs?page=last": 50.0,
}


def _size(name: str, full: float, quick: float, ctx: Context) -> float:
    raw = os.environ.get(name, "")
    return float(raw) if raw else (quick if ctx.quick else full)


def _fill(account: int, batch_ids: list[int], per_batch: int) -> None:
    """60% pending, 40% completed, one batch per statement."""
    finished = int(per_batch * 0.4)
    for pk in batch_ids:
        datagen.insert_jobs(account, [pk], per_batch - finished)
        datagen.insert_jobs(account, [pk], finished, status="completed", start=10**8)


def _requests(base: str, big: tuple[str, str], small: tuple[str, str], count: int):
    """Each request on the big side, then on the small, ``count`` times."""
    import requests

    sessions = {}
    for side, (token, _) in (("big", big), ("small", small)):
        s = requests.Session()
        s.headers["Authorization"] = f"Token {token}"
        sessions[side] = s
    out: dict[str, dict[str, list[float]]] = {
        fig: {"big": [], "small": []} for fig in TARGETS
    }
    errors: list[str] = []

    def timed(side: str, figure: str, method: str, url: str, **kw) -> None:
        t0 = time.perf_counter()
        r = sessions[side].request(method, base + url, timeout=120, **kw)
        dt = (time.perf_counter() - t0) * 1000
        if r.status_code >= 300:
            errors.append(f"{figure} {side}: {r.status_code} {r.text[:150]}")
        elif figure:
            out[figure][side].append(dt)

    for _ in range(count):
        for side, (_, batch_id) in (("big", big), ("small", small)):
            b = f"/api/v1/batches/{batch_id}"
            timed(side, "PATCH pause", "PATCH", b, json={"is_active": False})
            timed(side, "", "PATCH", b, json={"is_active": True})
            timed(side, "GET /api/v1/batches", "GET", "/api/v1/batches")
            timed(side, "GET stats", "GET", f"{b}/stats")
            timed(side, "GET jobs?page=last", "GET", f"{b}/jobs?page=last")
    return out, errors


def _set_triggers(enabled: bool) -> None:
    verb = "ENABLE" if enabled else "DISABLE"
    with connection.cursor() as cursor:
        for name in TRIGGERS:
            cursor.execute(f"ALTER TABLE jobs_job {verb} TRIGGER {name}")


def _claim_rates(ctx: Context, account: int, reps: int, seconds: float, jobs: int):
    """ABBA runs of 8 claimers draining one fresh batch, counts on and off."""
    from batches.job_counts import job_count_drift, job_counts_repair

    rates: dict[str, list[float]] = {"on": [], "off": []}
    drift_left = 0
    order = [("on", "off")[(i // 2 + i) % 2] for i in range(2 * reps)]
    options = {"url": ctx.dbs.url}
    for i, mode in enumerate(order):
        [pk] = datagen.create_batches(
            account, 1, active=True, prefix=f"claim-{i}", priority=100
        )
        datagen.insert_jobs(account, [pk], jobs)
        with connection.cursor() as cursor:
            # ANALYZE only: a VACUUM of the 10M-row table per run would cost
            # more than the runs.
            cursor.execute("ANALYZE jobs_job")
        _set_triggers(mode == "on")
        try:
            run = claimers.drain(
                "ours-claim", CLAIMERS, options=options, seconds=seconds
            )
        finally:
            _set_triggers(True)
        if run.errors:
            raise RuntimeError(run.errors[0])
        rates[mode].append(run.rate)
        with connection.cursor() as cursor:  # out of the way of the next run
            cursor.execute(
                "UPDATE batches_batch SET is_active = false WHERE id = %s", [pk]
            )
        if mode == "off":
            job_counts_repair([pk])
        drift_left += len(job_count_drift([pk]))
    return rates, order, drift_left


def run(ctx: Context) -> None:
    per_batch = int(_size("BENCH_COUNTS_JOBS", 1_000_000, 20_000, ctx))
    count = int(_size("BENCH_COUNTS_REQUESTS", 200, 30, ctx))
    claim_seconds = _size("BENCH_COUNTS_CLAIM_SECONDS", 5.0, 1.5, ctx)
    reps = 1 if ctx.quick else 5
    try:
        server.require_api()
    except Missing as exc:
        ctx.report.missing.append(f"counts: {exc}")
        return

    datagen.truncate_jobs()
    t0 = time.monotonic()
    big_account = datagen.create_account("bench-counts")
    small_account = datagen.create_account("bench-counts-small")
    big = datagen.create_batches(big_account, BIG_BATCHES, active=True, prefix="cnt")
    [small] = datagen.create_batches(small_account, 1, active=True, prefix="cnt-s")
    _fill(big_account, big, per_batch)
    _fill(small_account, [small], SMALL_JOBS)
    datagen.vacuum_analyze()
    fill_seconds = time.monotonic() - t0

    from batches.models import Batch

    big_id = Batch.objects.get(pk=big[0]).batch_id
    small_id = Batch.objects.get(pk=small).batch_id
    big_token = server.api_token("bench-counts", "bench-counts")
    small_token = server.api_token("bench-counts-small", "bench-counts-small")
    srv = server.Server()
    try:
        srv.warm(big_token)
        srv.warm(small_token)
        latencies, errors = _requests(
            srv.url, (big_token, big_id), (small_token, small_id), count
        )
    finally:
        srv.stop()

    # The claim runs: only their own batch is active.
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE batches_batch SET is_active = false WHERE id = ANY(%s)",
            [[*big, small]],
        )
    claim_jobs_per_run = max(2000, int(claim_seconds * 4000))
    rates, order, drift_left = _claim_rates(
        ctx, big_account, reps, claim_seconds, claim_jobs_per_run
    )

    ctx.report.raw["counts"] = {
        "jobs_per_big_batch": per_batch,
        "big_batches": BIG_BATCHES,
        "requests_per_figure": count,
        "fill_seconds": round(fill_seconds, 1),
        "latency_ms": latencies,
        "errors": errors[:20],
        "claim_rates": rates,
        "claim_order": order,
        "claim_seconds": claim_seconds,
        "claim_jobs_per_run": claim_jobs_per_run,
        "drift_left_after_repair": drift_left,
    }
    scale = f"{BIG_BATCHES} x {per_batch:,} jobs"
    for figure, target in TARGETS.items():
        big_lat = latencies[figure]["big"]
        small_lat = latencies[figure]["small"]
        if not big_lat or not small_lat:
            ctx.report.missing.append(f"counts {figure}: no successful request")
            continue
        p99, small_p99 = percentile(big_lat, 99), percentile(small_lat, 99)
        ratio = p99 / small_p99 if small_p99 else float("nan")
        ctx.report.add(
            SECTION,
            f"{figure} p99, 1M-class batch ({scale})",
            p99,
            "ms",
            target=f"<= {target:.0f} ms, <= 2x the 100-job batch",
            passed=p99 <= target and ratio <= 2,
            ratio=ratio,
            note=f"100-job batch p99 {small_p99:.1f} ms; p50"
            f" {percentile(big_lat, 50):.1f} / {percentile(small_lat, 50):.1f} ms;"
            f" {len(big_lat)} requests each",
        )
    # The ratio within each on/off pair (adjacent runs), then the median of
    # those: the machine's load drifts between pairs more than within one.
    by_mode = {"on": iter(rates["on"]), "off": iter(rates["off"])}
    sequence = [next(by_mode[mode]) for mode in order]
    ratios = []
    for i in range(0, len(order) - 1, 2):
        pair = dict(zip(order[i : i + 2], sequence[i : i + 2], strict=True))
        if pair.get("on") and pair.get("off"):
            ratios.append(pair["on"] / pair["off"])
    ratio = median(ratios) if ratios else None
    on, off = median(rates["on"]), median(rates["off"])
    ctx.report.add(
        SECTION,
        f"claim rate with counts / without, {CLAIMERS} claimers on one batch",
        on,
        "jobs/s",
        target=">= 0.95x",
        passed=ratio is not None and ratio >= 0.95,
        ratio=ratio,
        note=f"median of the on/off ratio within each pair"
        f" {[round(r, 2) for r in ratios]}; runs {order}:"
        f" {[round(r) for r in sequence]} jobs/s; median without {off:,.0f}",
    )
    ctx.report.add(
        SECTION,
        "counts drifted after the runs without triggers, once repaired",
        drift_left,
        "",
        target="0",
        passed=drift_left == 0,
    )
    if errors:
        ctx.report.missing.append(f"counts request errors: {errors[:3]}")
    datagen.truncate_jobs()
