"""11. Pacing: four workers share one Twilio account's call rate.

Four ``manage.py run_call_worker --dialer twilio --burst --concurrency 8``
processes drain a batch of BENCH_PACING_JOBS jobs (60 by default) through
the loopback fake Twilio (jobs/tests/fake_twilio.py, the real ``twilio``
client pointed at it by TWILIO_API_BASE_URL), whose signed status callbacks
reach the app under gunicorn, so the calls end as real ones do. The fake
records when each create request arrives.

* ``shared``: TWILIO_CALLS_PER_SECOND = BENCH_PACING_CPS (5), the slots
  taken from the database (jobs/pacing.py). The figure is the most creates
  the fake received in any one-second window (sliding, over every create),
  against the rate: the target is never above it, in every repetition.
* ``unpaced``, the baseline in the same run: TWILIO_CALLS_PER_SECOND = 0,
  the same four workers and jobs, what the account would receive without
  the shared limit.

Also reported: the achieved rate (creates over the span from the first to
the last) over the rate set, which the guard keeps a little under 1.0x; and
how late each create reached the fake after the slot the database granted
it (the host's clock for both, so the difference is real lateness): what
the guard and the send permit absorb (docs/telephony.md#pacing-and-capacity).

``--quick`` runs 15 jobs once.
"""

from __future__ import annotations

import bisect
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from typing import Any

from bench import datagen
from bench.context import Context
from bench.report import median, percentile, spread
from bench.server import ROOT, Server, free_port

SECTION = "11 pacing"
WORKERS = 4
SID = "AC" + "b" * 32
AUTH = "bench-auth-token"
FROM = "+14155550100"


def _size(name: str, full: float, quick: float, ctx: Context) -> float:
    raw = os.environ.get(name, "")
    return float(raw) if raw else (quick if ctx.quick else full)


def max_in_window(times: list[float], window: float = 1.0) -> int:
    """The most of ``times`` in any half-open window [t, t + window)."""
    ordered = sorted(times)
    best = 0
    for i, start in enumerate(ordered):
        best = max(best, bisect.bisect_left(ordered, start + window) - i)
    return best


@contextmanager
def _environ(**values: str):
    """Set environment variables for the subprocesses started inside."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _drain(fake: Any, jobs: int, cps: float, run: int) -> dict[str, Any]:
    """Four workers drain a fresh batch of ``jobs`` (numbers of their own:
    the account's 24-hour cap per number would stop a fourth call to one);
    what the fake saw."""
    from jobs.models import CallAttempt

    datagen.truncate_jobs()
    account = datagen.create_account("bench-pacing")
    batches = datagen.create_batches(account, 1, active=True, prefix=f"pace-{run}")
    datagen.insert_jobs(account, batches, jobs, start=run * jobs)
    with fake.lock:
        fake.creates.clear()
        fake.created_at.clear()
    env = {**os.environ, "TWILIO_CALLS_PER_SECOND": str(cps)}
    t0 = time.monotonic()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "run_call_worker",
                "--dialer",
                "twilio",
                "--burst",
                "--concurrency",
                "8",
                "--worker-id",
                f"bench-pace-{n}",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for n in range(WORKERS)
    ]
    errors = []
    for proc in procs:
        try:
            _, err = proc.communicate(timeout=max(120.0, 4 * jobs / max(cps, 1)))
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        if proc.returncode != 0:
            errors.append(err.decode(errors="replace")[-500:])
    seconds = time.monotonic() - t0
    with fake.lock:
        arrived = list(fake.created_at)
        tokens = [p["StatusCallback"][0].rsplit("/", 1)[-1] for p in fake.creates]
    slots = dict(
        CallAttempt.objects.filter(token__in=tokens).values_list("token", "slot_at")
    )
    lateness = [
        at - slots[token].timestamp()
        for at, token in zip(arrived, tokens, strict=True)
        if slots.get(token) is not None
    ]
    span = max(arrived) - min(arrived) if len(arrived) > 1 else 0.0
    return {
        "creates": len(arrived),
        "max_in_1s": max_in_window(arrived),
        "rate": (len(arrived) - 1) / span if span else 0.0,
        "lateness": lateness,
        "seconds": seconds,
        "errors": errors,
    }


def run(ctx: Context) -> None:
    from jobs.tests.fake_twilio import ANSWERED, FakeTwilio

    jobs = int(_size("BENCH_PACING_JOBS", 60, 15, ctx))
    cps = _size("BENCH_PACING_CPS", 5.0, 5.0, ctx)
    reps = 1 if ctx.quick else 3
    fake = FakeTwilio(SID, AUTH).start()
    fake.script = ANSWERED
    server_env = {
        "DJANGO_DEBUG": "true",  # PUBLIC_BASE_URL is loopback http
        "TWILIO_ACCOUNT_SID": SID,
        "TWILIO_AUTH_TOKEN": AUTH,
        "TWILIO_FROM_NUMBER": FROM,
        "TWILIO_API_BASE_URL": fake.base_url,
        "TWILIO_CALL_URL": "https://agent.example.com/voice.xml",
        "WORKER_RENEW_SECONDS": "0.2",
    }
    port = free_port()
    server_env["PUBLIC_BASE_URL"] = f"http://127.0.0.1:{port}"
    shared: list[dict[str, Any]] = []
    try:
        with (
            _environ(**server_env),
            Server(workers=2, port=port, env=server_env),
        ):
            for rep in range(reps):
                shared.append(_drain(fake, jobs, cps, rep))
            unpaced = _drain(fake, jobs, 0, reps)
    finally:
        fake.stop()
        datagen.truncate_jobs()

    from django.conf import settings

    guard = settings.DIALER_PACING_GUARD_SECONDS
    highest = [run["max_in_1s"] for run in shared]
    complete = all(run["creates"] == jobs and not run["errors"] for run in shared)
    lateness = [x for run in shared for x in run["lateness"]]
    rates = [run["rate"] / cps for run in shared]
    ctx.report.raw["pacing"] = {
        "jobs": jobs,
        "cps": cps,
        "guard_seconds": guard,
        "shared": [{k: v for k, v in run.items() if k != "lateness"} for run in shared],
        "unpaced": {k: v for k, v in unpaced.items() if k != "lateness"},
        "lateness_ms": [round(x * 1000, 1) for x in lateness],
    }
    ctx.report.add(
        SECTION,
        f"most creates in any 1 s, {WORKERS} workers sharing {cps:g}/s",
        max(highest),
        "creates",
        target=f"never above {cps:g}, every repetition",
        passed=max(highest) <= cps and complete,
        spread=spread([float(h) for h in highest], "{:.0f}"),
        key="pacing_max_window",
        note=f"{jobs} jobs per repetition, each called once: {complete}; "
        f"baseline unpaced (TWILIO_CALLS_PER_SECOND=0): "
        f"{unpaced['max_in_1s']} in 1 s, {unpaced['rate']:.0f}/s",
    )
    ctx.report.add(
        SECTION,
        "achieved rate over the rate set",
        median(rates) * cps,
        "creates/s",
        ratio=median(rates),
        spread=spread(rates, "{:.2f}"),
        key="pacing_rate",
        note=f"the guard ({guard:g} s) spaces slots {1 + guard:.2f}/cps apart",
    )
    if lateness:
        ctx.report.add(
            SECTION,
            "create arrival after its slot, p99",
            percentile(lateness, 99) * 1000,
            "ms",
            key="pacing_lateness",
            note=f"p50 {percentile(lateness, 50) * 1000:.1f} ms, max "
            f"{max(lateness) * 1000:.1f} ms; load {os.getloadavg()[0]:.2f}",
        )
