"""Background sweeps: cancelling a big batch over the API.

A batch of 1,000,000 pending jobs (``control_big_batch``) is cancelled with
``POST /api/v1/batches/{id}/cancel`` through gunicorn on loopback while 8
claimers keep claiming from other batches, paced as in the control section
(PACE seconds between calls, niced by WORKER_NICE as workers are). The API
flips the batch and answers 202 with an operation (SWEEP_INLINE_MAX_JOBS;
a --quick run lowers it under its small batch); the figure is that answer's
latency (target <= 100 ms). Then the operation is run as the qcluster's task
would run it (``batches.operations.operation_run``, in this process, run
after run until it succeeds), and the figure is the longest claim statement
that overlapped the sweep (target <= 100 ms), set against the longest in
the seconds just before the cancel.
"""

from __future__ import annotations

import os
import time

from django.db import connection

from bench import claimers, datagen, server
from bench.context import Context
from bench.ours import Missing
from bench.report import percentile
from bench.waits import WaitSampler, top

SECTION = "4b background sweeps"
CLAIMERS = 8
PACE = 0.005
BASELINE_SECONDS = 3.0
REQUESTS_BEFORE = 5  # 202 latencies are set against plain PATCHes


def _stall(samples: list[tuple[float, float]], start: float, end: float) -> float:
    return max(
        (dt * 1000 for t0, dt in samples if t0 <= end and t0 + dt >= start),
        default=0.0,
    )


def run(ctx: Context) -> None:
    import requests
    from django.conf import settings

    from batches import operations
    from batches.models import Batch, Operation
    from bench.control import _claim_kind

    big = ctx.sizes.control_big_batch
    try:
        server.require_api()
    except Missing as exc:
        ctx.report.missing.append(f"background sweeps: {exc}")
        return
    datagen.truncate_jobs()
    slug = "bench-sweeps"
    account = datagen.create_account(slug)
    others = datagen.create_batches(account, 8, active=True, prefix="sw", priority=10)
    doomed = datagen.create_batches(account, 1, active=True, prefix="sw-big")
    datagen.insert_jobs(account, others, max(2000, big // 10) // 8)
    datagen.insert_jobs(account, doomed, big)
    datagen.vacuum_analyze()
    token = server.api_token("bench-sweeps", slug)
    threshold = settings.SWEEP_INLINE_MAX_JOBS
    if big <= threshold:
        threshold = max(1, big // 2)  # --quick: the 202 path at a small size
    previous = os.environ.get("SWEEP_INLINE_MAX_JOBS")
    os.environ["SWEEP_INLINE_MAX_JOBS"] = str(threshold)
    kind, note = _claim_kind()
    batch_id = Batch.objects.get(pk=doomed[0]).batch_id
    srv = server.Server()
    pool: claimers.Pool | None = None
    try:
        srv.warm(token)
        session = requests.Session()
        session.headers["Authorization"] = f"Token {token}"
        pool = claimers.Pool(
            kind,
            CLAIMERS,
            options={"url": ctx.dbs.url, "nice": settings.WORKER_NICE, "pace": PACE},
            keep_samples=True,
            drain=False,
        )
        pool.go()
        time.sleep(BASELINE_SECONDS)
        # The same server's plain answer for comparison: GET the batch.
        plain = []
        for _ in range(REQUESTS_BEFORE):
            t0 = time.perf_counter()
            session.get(f"{srv.url}/api/v1/batches/{batch_id}", timeout=60)
            plain.append((time.perf_counter() - t0) * 1000)
        flip_start = time.monotonic()
        t0 = time.perf_counter()
        response = session.post(
            f"{srv.url}/api/v1/batches/{batch_id}/cancel", json={}, timeout=120
        )
        accepted_ms = (time.perf_counter() - t0) * 1000
        if response.status_code != 202:
            raise RuntimeError(
                f"cancel answered {response.status_code}: {response.text[:300]}"
            )
        operation = Operation.objects.get(
            operation_id=response.json()["operation"]["operation_id"]
        )
        connection.close()
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            sweeper = cursor.fetchone()[0]
        sampler = WaitSampler(ctx.dbs.url, exclude=[sweeper])
        sampler.start()
        # The qcluster's part: run after run (each stops at its time budget
        # and queues its continuation, which is this loop) until done.
        operations.enqueue = lambda pk: None  # type: ignore[assignment]
        sweep_start = time.monotonic()
        runs = 0
        while True:
            runs += 1
            operations.operation_run(operation.pk)
            operation.refresh_from_db()
            if operation.finished:
                break
        sweep_end = time.monotonic()
        waits = sampler.stop()
        time.sleep(0.5)
        result = pool.stop()
        pool = None
    finally:
        srv.stop()
        if pool:
            pool.stop_event.set()
        if previous is None:
            os.environ.pop("SWEEP_INLINE_MAX_JOBS", None)
        else:
            os.environ["SWEEP_INLINE_MAX_JOBS"] = previous
    if result.errors:
        raise RuntimeError(result.errors[0])
    claims = [s for r in result.results for s in r.claim_samples]
    since = flip_start - BASELINE_SECONDS + 0.5
    steady = [dt * 1000 for t, dt in claims if since <= t < flip_start]
    stall = _stall(claims, sweep_start, sweep_end)
    flip_stall = _stall(claims, flip_start, sweep_start)
    ctx.report.raw["sweeps"] = {
        "jobs": big,
        "threshold": threshold,
        "accepted_ms": accepted_ms,
        "plain_get_ms": plain,
        "sweep_seconds": sweep_end - sweep_start,
        "runs": runs,
        "operation": {
            "state": operation.state,
            "total": operation.total,
            "done": operation.done,
            "cancelled_jobs": operation.cancelled_jobs,
        },
        "claim_ms_max_before": max(steady, default=0.0),
        "claim_ms_max_during_flip": flip_stall,
        "claim_ms_max_during_sweep": stall,
        "claimer_waits_during_sweep": waits,
    }
    ctx.report.add(
        SECTION,
        f"POST cancel of a {big:,}-job batch: 202 with the operation",
        accepted_ms,
        "ms",
        target="<= 100 ms",
        passed=accepted_ms <= 100,
        note=f"SWEEP_INLINE_MAX_JOBS={threshold:,}; GET of the batch just before:"
        f" p50 {percentile(plain, 50):.0f} ms; {CLAIMERS} paced claimers running",
        key="sweeps:accepted",
    )
    ctx.report.add(
        SECTION,
        f"background cancel sweep of {operation.cancelled_jobs:,} jobs",
        sweep_end - sweep_start,
        "s",
        note=f"{runs} run(s) of batches.operations.operation_run;"
        f" state {operation.state}",
        key="sweeps:seconds",
    )
    ctx.report.add(
        SECTION,
        "longest claim statement during the background sweep",
        stall,
        "ms",
        target="<= 100 ms",
        passed=stall <= 100,
        note=f"just before: p99 {percentile(steady, 99):.0f} ms, max"
        f" {max(steady, default=0.0):.0f} ms; during the 202: {flip_stall:.0f} ms;"
        f" {CLAIMERS} claimers niced as workers are, {PACE * 1000:.0f} ms between"
        f" calls; claimer waits: {top(waits)}; {note}".strip("; "),
        key="sweeps:stall",
    )
    datagen.truncate_jobs()
