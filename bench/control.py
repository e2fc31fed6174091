"""4. Control-plane latency under load.

(a) PATCH pause/resume through the real API on loopback (gunicorn): with no
claimer, then while 8 claimers run at full speed on other batches, first at
the claimers' own CPU priority, then lowered by WORKER_NICE as
run_call_worker lowers its own. Each has a target: p99 <= 50 ms niced (the
default deployment), p99 <= 100 ms at the claimers' own priority. gunicorn
runs in the bench's session, as the claimers do, so the kernel shares the CPU
among all of them process by process. A last round, for comparison, starts
gunicorn in a session of its own, as a service manager starts a service (the
kernel's autogroup, or a cgroup per service, then gives it its own share), with
the claimers at their own priority. pg_stat_activity is sampled for where the
web's backends are while they run a statement (a lock on a hot row, or CPU).
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


def _web_backends(url: str) -> list[int]:
    """The gunicorn workers' backends: every client backend but ours, read
    right after the warm-up requests."""
    from bench.waits import backends

    return backends(url)


def _patch_run_name(own_session: bool, niceness: int) -> str:
    if own_session:
        return "web in its own session, claimers not niced"
    return "claimers niced" if niceness else "claimers not niced"


def _stall(samples: list[tuple[float, float]], start: float, end: float) -> float:
    """Longest claim (ms) that overlapped [start, end]."""
    return max(
        (dt * 1000 for t0, dt in samples if t0 <= end and t0 + dt >= start),
        default=0.0,
    )


def run(ctx: Context) -> None:
    from batches.models import Batch
    from batches.services import batch_cancel, batch_delete
    from callcenter.actor import Actor

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
    pool: claimers.Pool | None = None
    srv: server.Server | None = None
    idle: dict[str, list] = {}
    patch: dict[str, list] = {}
    patch_unniced: dict[str, list] = {}
    patch_own_session: dict[str, list] = {}
    web_waits: dict[str, dict[str, float]] = {}
    try:
        if token:
            target_id = Batch.objects.get(pk=target[0]).batch_id
            # (web in its own session?, claimers' niceness, results)
            runs = (
                (False, None, idle),
                (False, 0, patch_unniced),
                (False, nice, patch),
                (True, 0, patch_own_session),
            )
            for own_session, niceness, out in runs:
                if srv is None or own_session:
                    if srv:
                        srv.stop()
                    srv = server.Server(own_session=own_session)
                    srv.warm(token)
                    connection.close()
                    web = _web_backends(ctx.dbs.url)
                count = ctx.sizes.control_requests
                if niceness is None:
                    # The same requests with no claimer running, for comparison.
                    out.update(
                        _patch_loop(srv.url, token, target_id, max(5, count // 4))
                    )
                    continue
                pool = claimers.Pool(
                    kind,
                    CLAIMERS,
                    options={"url": ctx.dbs.url, "nice": niceness},
                    drain=False,
                )
                pool.go()
                time.sleep(1.0)
                web_sampler = WaitSampler(ctx.dbs.url, only=web) if web else None
                if web_sampler:
                    web_sampler.start()
                out.update(_patch_loop(srv.url, token, target_id, count))
                if web_sampler:
                    name = _patch_run_name(own_session, niceness)
                    web_waits[name] = web_sampler.stop()
                pool.stop()
                pool = None
            if srv:
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
        "patch_ms_web_own_session_claimers_not_niced": patch_own_session,
        # Where the gunicorn workers' backends were while running a statement.
        "web_backend_waits": web_waits,
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
            for run_key, lat, limit, who in (
                (
                    "niced",
                    patch[action],
                    50,
                    f"niced by WORKER_NICE={nice} as run_call_worker is",
                ),
                ("unniced", patch_unniced[action], 100, "at the web's own priority"),
                (
                    "own-session",
                    patch_own_session[action],
                    None,
                    "at the web's own priority, the web started as a service"
                    " of its own (own session)",
                ),
            ):
                p99 = percentile(lat, 99)
                waits_name = {
                    "niced": "claimers niced",
                    "unniced": "claimers not niced",
                    "own-session": "web in its own session, claimers not niced",
                }[run_key]
                ctx.report.add(
                    SECTION,
                    f"PATCH {action} p99, {CLAIMERS} full-speed claimers {who}"
                    f" ({len(lat)} requests)",
                    p99,
                    "ms",
                    target=f"p99 <= {limit} ms" if limit else "",
                    passed=p99 <= limit if limit else None,
                    note=f"p50 {percentile(lat, 50):.1f} ms; {kind} claimers;"
                    f" gunicorn 2 sync workers; no claimers: p50"
                    f" {percentile(idle[action], 50):.1f} / p99"
                    f" {percentile(idle[action], 99):.1f} ms; the web's backends,"
                    f" while running a statement:"
                    f" {top(web_waits.get(waits_name, {}))}",
                    key=f"patch:{action}:{run_key}",
                    before=before.figure(f"patch:{action}:{run_key}"),
                )
        errors = patch["errors"] + patch_unniced["errors"] + patch_own_session["errors"]
        if errors:
            ctx.report.missing.append(f"PATCH errors: {errors[:3]}")
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
