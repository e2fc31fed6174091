"""4. Control-plane latency under load.

(a) PATCH pause/resume through the real API on loopback (gunicorn): with no
claimer, then while 8 claimers run at full speed on other batches, first at
the claimers' own CPU priority, then lowered by WORKER_NICE as
run_call_worker lowers its own. Each has a target: p99 <= 50 ms niced (the
default deployment), p99 <= 100 ms at the claimers' own priority.
(b) A batch of 1,000,000 pending jobs is cancelled with batch_cancel and
another deleted with batch_delete while 8 claimers keep claiming from other
batches, each pausing PACE seconds between claims so that the two cores are
not saturated and a claim's latency shows what the sweep does to it, not the
CPU queue (at full speed the slowest claim is over 200 ms before any sweep
starts). Every claim statement's latency, and every whole no-op call's
(claim, reservation, dial mark, record, settlement), is recorded in the
claimer processes; the stalls are the longest claim statement and the longest
whole call that overlapped a cancel or delete (target <= 100 ms each), set
against the longest in the same time just before.
"""

from __future__ import annotations

import time

from django.db import connection

from bench import before, claimers, datagen, server
from bench.context import Context
from bench.ours import Missing
from bench.report import percentile
from bench.waits import WaitSampler, top

SECTION = "4 control plane"
CLAIMERS = 8
PACE = 0.005
BASELINE_SECONDS = 3.0


def _claim_kind() -> tuple[str, str]:
    from bench import ours

    try:
        ours.claim_and_finish()
    except Missing as exc:
        return "raw", f"raw claimers stand in: {exc}"
    return "ours", ""


def _patch_loop(base: str, token: str, batch_id: str, count: int) -> dict[str, list]:
    import requests

    session = requests.Session()
    session.headers["Authorization"] = f"Token {token}"
    out: dict[str, list] = {"pause": [], "resume": [], "errors": []}
    url = f"{base}/api/v1/batches/{batch_id}"
    for _ in range(count):
        for action, active in (("pause", False), ("resume", True)):
            t0 = time.perf_counter()
            r = session.patch(url, json={"is_active": active}, timeout=30)
            dt = time.perf_counter() - t0
            if r.status_code >= 300:
                out["errors"].append(f"{r.status_code} {r.text[:200]}")
            else:
                out[action].append(dt * 1000)
            time.sleep(0.02)
    return out


def _stall(samples: list[tuple[float, float]], start: float, end: float) -> float:
    """Longest claim (ms) that overlapped [start, end]."""
    return max(
        (dt * 1000 for t0, dt in samples if t0 <= end and t0 + dt >= start),
        default=0.0,
    )


def run(ctx: Context) -> None:
    from accounts.actor import Actor
    from batches.models import Batch
    from batches.services import batch_cancel, batch_delete

    big = ctx.sizes.control_big_batch
    datagen.truncate_jobs()
    slug = "bench-control"
    account = datagen.create_account(slug)
    # Claimers work on these; the big batches rank below, so claimers never
    # take their jobs, but share the table and its indexes with them.
    others = datagen.create_batches(account, 8, active=True, prefix="cp", priority=10)
    target = datagen.create_batches(account, 1, active=True, prefix="cp-t", priority=5)
    doomed = datagen.create_batches(account, 2, active=True, prefix="cp-big")
    datagen.insert_jobs(account, others, max(2000, big // 10) // 8)
    datagen.insert_jobs(account, target, 1000)
    datagen.insert_jobs(account, doomed, big)
    datagen.vacuum_analyze()

    kind, note = _claim_kind()
    api_note = ""
    token = ""
    try:
        server.require_api()
        token = server.api_token("bench-control", slug)
    except Missing as exc:
        api_note = str(exc)

    from django.conf import settings

    nice = settings.WORKER_NICE
    srv = server.Server() if token else None
    pool: claimers.Pool | None = None
    idle: dict[str, list] = {}
    patch: dict[str, list] = {}
    patch_unniced: dict[str, list] = {}
    try:
        if srv:
            srv.warm(token)
            target_id = Batch.objects.get(pk=target[0]).batch_id
            # The same requests with no claimer running, for comparison.
            idle = _patch_loop(
                srv.url, token, target_id, max(5, ctx.sizes.control_requests // 4)
            )
            for niceness, out in ((0, patch_unniced), (nice, patch)):
                pool = claimers.Pool(
                    kind,
                    CLAIMERS,
                    options={"url": ctx.dbs.url, "nice": niceness},
                    drain=False,
                )
                pool.go()
                time.sleep(1.0)
                out.update(
                    _patch_loop(srv.url, token, target_id, ctx.sizes.control_requests)
                )
                pool.stop()
                pool = None
            srv.stop()
            srv = None
        pool = claimers.Pool(
            kind,
            CLAIMERS,
            options={"url": ctx.dbs.url, "nice": nice, "pace": PACE},
            keep_samples=True,
            drain=False,
        )
        pool.go()
        time.sleep(BASELINE_SECONDS)
        actor = Actor.system("bench")
        windows = {}
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            sweeper = cursor.fetchone()[0]
        sampler = WaitSampler(ctx.dbs.url, exclude=[sweeper])
        sampler.start()
        t0 = time.monotonic()
        cancelled = batch_cancel(batch=Batch.objects.get(pk=doomed[0]), actor=actor)
        windows["cancel"] = (t0, time.monotonic(), cancelled)
        t0 = time.monotonic()
        deleted = batch_delete(batch=Batch.objects.get(pk=doomed[1]), actor=actor)
        windows["delete"] = (t0, time.monotonic(), deleted.cancelled_jobs)
        claimer_waits = sampler.stop()
        time.sleep(0.5)
        result = pool.stop()
        pool = None
    finally:
        if srv:
            srv.stop()
        if pool:
            pool.stop_event.set()
    if result.errors:
        raise RuntimeError(result.errors[0])
    # The claim statement alone, and the whole no-op call it starts (claim,
    # reservation, dial mark, record, settlement).
    claims = [s for r in result.results for s in r.claim_samples]
    samples = [s for r in result.results for s in r.samples]
    sweep_start = windows["cancel"][0]

    def just_before(rows: list[tuple[float, float]]) -> list[float]:
        since = sweep_start - BASELINE_SECONDS + 0.5
        return [dt * 1000 for t, dt in rows if since <= t < sweep_start]

    steady = just_before(claims)
    steady_calls = just_before(samples)
    ctx.report.raw["control"] = {
        "claim_kind": kind,
        "claims": result.jobs,
        "claim_ms_p50_before": percentile(steady, 50),
        "claim_ms_p99_before": percentile(steady, 99),
        "patch_ms": patch,
        "patch_ms_claimers_not_niced": patch_unniced,
        "patch_ms_idle": idle,
        "worker_nice": nice,
        "pace_s": PACE,
        "windows": {k: [v[1] - v[0], v[2]] for k, v in windows.items()},
        "claimer_waits_during_sweeps": claimer_waits,
        "claim_ms_max_before": max(steady, default=0.0),
        "call_ms_max_before": max(steady_calls, default=0.0),
        "call_ms_max_during": {
            op: _stall(samples, start, end) for op, (start, end, _) in windows.items()
        },
    }
    if token:
        for action in ("pause", "resume"):
            for niced, lat, limit in (
                (True, patch[action], 50),
                (False, patch_unniced[action], 100),
            ):
                p99 = percentile(lat, 99)
                who = (
                    f"niced by WORKER_NICE={nice} as run_call_worker is"
                    if niced
                    else "at the web's own CPU priority"
                )
                ctx.report.add(
                    SECTION,
                    f"PATCH {action} p99, {CLAIMERS} full-speed claimers {who}"
                    f" ({len(lat)} requests)",
                    p99,
                    "ms",
                    target=f"p99 <= {limit} ms",
                    passed=p99 <= limit,
                    note=f"p50 {percentile(lat, 50):.1f} ms; {kind} claimers;"
                    f" gunicorn 2 sync workers; no claimers: p50"
                    f" {percentile(idle[action], 50):.1f} / p99"
                    f" {percentile(idle[action], 99):.1f} ms",
                    key=f"patch:{action}:{'niced' if niced else 'unniced'}",
                    before=before.figure(
                        f"patch:{action}:{'niced' if niced else 'unniced'}"
                    ),
                )
        if patch["errors"] or patch_unniced["errors"]:
            ctx.report.missing.append(
                f"PATCH errors: {(patch['errors'] + patch_unniced['errors'])[:3]}"
            )
    else:
        ctx.report.missing.append(f"control PATCH latency: {api_note}")
    for op, (start, end, jobs) in windows.items():
        stall = _stall(claims, start, end)
        call_stall = _stall(samples, start, end)
        ctx.report.add(
            SECTION,
            f"batch_{op} of {jobs:,} pending jobs",
            end - start,
            "s",
            key=f"sweep:{op}",
        )
        common = (
            f"{CLAIMERS} claimers niced as workers are, {PACE * 1000:.0f} ms"
            f" between calls; claimer waits during sweeps: {top(claimer_waits)}"
        )
        ctx.report.add(
            SECTION,
            f"longest claim statement during {op}",
            stall,
            "ms",
            target="<= 100 ms",
            passed=stall <= 100,
            note=f"just before: p99 {percentile(steady, 99):.0f} ms, max"
            f" {max(steady, default=0.0):.0f} ms; {common}; {note}".strip("; "),
            key=f"stall:{op}:claim",
            before=before.figure(f"stall:{op}:claim"),
        )
        ctx.report.add(
            SECTION,
            f"longest whole call during {op} (claim, reserve, dial mark, record,"
            " settle)",
            call_stall,
            "ms",
            target="<= 100 ms",
            passed=call_stall <= 100,
            note=f"just before: p99 {percentile(steady_calls, 99):.0f} ms, max"
            f" {max(steady_calls, default=0.0):.0f} ms; {common}",
            key=f"stall:{op}:call",
            before=before.figure(f"stall:{op}:call"),
        )
    datagen.truncate_jobs()
