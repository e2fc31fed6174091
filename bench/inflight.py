"""11. Calls in flight: one worker's RSS and threads at 10, 100 and 2,000
calls.

For each N, one ``manage.py run_call_worker --dialer twilio --concurrency
N`` process against the tests' loopback fake of Twilio's Calls API
(bench/fake_twilio_server.py, a process of its own), with N jobs of distinct
numbers in an active batch. The fake places every call and never calls back,
so each call stays in flight (ringing at the provider, a non-terminal
``CallAttempt`` row here) until the bench ends the worker. Once N attempts
are in flight with their provider call id saved, the worker's VmRSS and
Threads are read from /proc/PID/status every 0.5 s for
``SAMPLE_SECONDS`` (lease renewals of every call run meanwhile); the figure
is the largest of those samples. Target: at most 16 threads at every N, and
flat: RSS and threads at 2,000 calls within 1.10x of those at 10.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from django.db import connection

from bench import datagen
from bench.context import Context
from bench.report import median
from bench.server import ROOT

SECTION = "11 calls in flight"
SID = "AC" + "f" * 32
AUTH = "f" * 32
MAX_THREADS = 16
FLAT = 1.10
SAMPLE_SECONDS = 5.0
WAIT_SECONDS = 300.0

IN_FLIGHT_SQL = (
    "SELECT count(*) FROM jobs_callattempt"
    " WHERE ended_at IS NULL AND provider_call_id <> ''"
)


def levels(ctx: Context) -> tuple[int, ...]:
    return (10, 100, 300) if ctx.quick else (10, 100, 2000)


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS (KiB) and Threads of a process, from /proc/PID/status."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                name, _, value = line.partition(":")
                if name in ("VmRSS", "Threads"):
                    out[name] = int(value.split()[0])
    except OSError:
        pass
    return out


def _in_flight() -> int:
    with connection.cursor() as cursor:
        cursor.execute(IN_FLIGHT_SQL)
        return int(cursor.fetchone()[0])


def _worker_env(fake_url: str) -> dict[str, str]:
    env = os.environ.copy()
    env.update(
        TWILIO_ACCOUNT_SID=SID,
        TWILIO_AUTH_TOKEN=AUTH,
        TWILIO_FROM_NUMBER="+14155550100",
        TWILIO_API_BASE_URL=fake_url,
        TWILIO_CALL_URL="https://agent.bench.invalid/voice.xml",
        # The fake never calls back; nothing is sent to this origin.
        PUBLIC_BASE_URL="https://callcenter.bench.invalid",
        # Placing 2,000 calls is the set-up, not the figure: no pacing.
        TWILIO_CALLS_PER_SECOND="100000",
        LOG_LEVEL="WARNING",
    )
    return env


def measure(n: int, fake_url: str) -> dict[str, Any]:
    """One worker with ``--concurrency n`` and n jobs: its samples once n
    calls are in flight."""
    datagen.truncate_jobs()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE jobs_callattempt")
    account = datagen.create_account("bench-inflight")
    batch = datagen.create_batches(account, 1, active=True, prefix=f"inflight{n}")
    datagen.insert_jobs(account, batch, n)
    datagen.vacuum_analyze()
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "run_call_worker",
            "--dialer",
            "twilio",
            "--concurrency",
            str(n),
            "--worker-id",
            f"bench-inflight-{n}",
        ],
        cwd=ROOT,
        env=_worker_env(fake_url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    samples: list[dict[str, float]] = []
    reached = None
    try:
        while time.monotonic() - t0 < WAIT_SECONDS and proc.poll() is None:
            if _in_flight() >= n:
                reached = time.monotonic() - t0
                break
            time.sleep(0.2)
        if reached is not None:
            end = time.monotonic() + SAMPLE_SECONDS
            while time.monotonic() < end and proc.poll() is None:
                status = proc_status(proc.pid)
                if status:
                    samples.append(
                        {
                            "t": round(time.monotonic() - t0, 2),
                            "rss_kib": status.get("VmRSS", 0),
                            "threads": status.get("Threads", 0),
                            "in_flight": _in_flight(),
                        }
                    )
                time.sleep(0.5)
    finally:
        # The figures are taken: the calls are left to the provider (the
        # fake is stopped after the section) and the rows truncated.
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if reached is None or not samples:
        raise RuntimeError(
            f"{n} calls never in flight ({_in_flight()} after"
            f" {time.monotonic() - t0:.0f} s); worker said: {stderr[-800:]}"
        )
    return {
        "n": n,
        "seconds_to_reach": round(reached, 2),
        "rss_kib": max(s["rss_kib"] for s in samples),
        "rss_kib_median": median([s["rss_kib"] for s in samples]),
        "threads": max(s["threads"] for s in samples),
        "in_flight_min": min(s["in_flight"] for s in samples),
        "samples": samples,
        "stderr_tail": stderr[-1000:],
    }


def run(ctx: Context) -> None:
    fake = subprocess.Popen(
        [sys.executable, "-m", "bench.fake_twilio_server", SID, AUTH],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert fake.stdout is not None
        fake_url = fake.stdout.readline().strip()
        if not fake_url.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"the fake Twilio did not start: {fake_url!r}")
        results = []
        for n in levels(ctx):
            load = [round(x, 2) for x in os.getloadavg()]
            result = {**measure(n, fake_url), "loadavg_before": load}
            results.append(result)
            print(
                f"[bench] in flight {n}: RSS {result['rss_kib'] / 1024:.1f} MiB,"
                f" {result['threads']} threads, reached in"
                f" {result['seconds_to_reach']} s",
                file=sys.stderr,
                flush=True,
            )
    finally:
        if fake.stdin is not None:
            fake.stdin.close()
        try:
            fake.wait(timeout=10)
        except subprocess.TimeoutExpired:
            fake.kill()
    datagen.truncate_jobs()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE jobs_callattempt")
    ctx.report.raw["inflight"] = results
    low, high = results[0], results[-1]
    rss_ratio = high["rss_kib"] / low["rss_kib"]
    thread_ratio = high["threads"] / low["threads"]
    most = max(r["threads"] for r in results)
    per_n = "; ".join(
        f"{r['n']:,}: {r['rss_kib'] / 1024:.1f} MiB, {r['threads']} threads"
        f" (load {r['loadavg_before'][0]})"
        for r in results
    )
    ctx.report.add(
        SECTION,
        f"worker RSS, --dialer twilio, {high['n']:,} / {low['n']:,} calls in flight",
        high["rss_kib"] / 1024,
        f"MiB at {high['n']:,}",
        target=f"flat: <= {FLAT:.2f}x",
        passed=rss_ratio <= FLAT,
        ratio=rss_ratio,
        key="inflight:rss",
        note=per_n,
    )
    ctx.report.add(
        SECTION,
        f"worker threads, --dialer twilio, {high['n']:,} / {low['n']:,} calls in"
        " flight",
        most,
        "threads at most",
        target=f"flat, <= {MAX_THREADS} threads",
        passed=most <= MAX_THREADS and thread_ratio <= 1.0,
        ratio=thread_ratio,
        key="inflight:threads",
        note=", ".join(f"{r['n']:,}: {r['threads']}" for r in results)
        + f"; {high['n']:,} calls in flight reached in"
        f" {high['seconds_to_reach']} s",
    )
