"""6. Memory: one `manage.py run_call_worker --concurrency 50` over 10,000
calls with the simulated dialer and tiny calls; its RSS is read from /proc
every 0.2 s together with the number of jobs dialled so far. The figure is
the growth from the point where 10% of the calls were dialled to the end
(start-up imports and the first pool of call threads are not growth).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from django.db import connection

from bench import before, datagen
from bench.context import Context
from bench.server import ROOT

SECTION = "6 memory"
CONCURRENCY = 50


def rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _at(samples: list[tuple[float, int, int]], fraction: float, calls: int) -> int:
    for _t, kib, dialled in samples:
        if dialled >= fraction * calls:
            return kib
    return samples[-1][1]


DIALLED_SQL = "SELECT count(*) FROM jobs_job WHERE attempts > 0"


def run(ctx: Context) -> None:
    from bench.ours import _require_claim
    from jobs.models import Job

    _require_claim()
    calls = ctx.sizes.memory_calls
    datagen.truncate_jobs()
    account = datagen.create_account("bench-memory")
    batches = datagen.create_batches(account, 10, active=True, prefix="mem")
    datagen.insert_jobs(account, batches, calls // 10)
    datagen.vacuum_analyze()
    env = os.environ.copy()
    env.update(
        SIMULATED_CALL_SECONDS="0.005-0.02",
        SIMULATED_SEED="1",
        LOG_LEVEL="WARNING",
    )
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "run_call_worker",
            "--concurrency",
            str(CONCURRENCY),
            "--dialer",
            "simulated",
            "--max-jobs",
            str(calls),
            "--worker-id",
            "bench-memory",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    samples: list[tuple[float, int, int]] = []
    with connection.cursor() as cursor:
        while proc.poll() is None:
            kib = rss_kib(proc.pid)
            cursor.execute(DIALLED_SQL)
            dialled_now = cursor.fetchone()[0]
            if kib:
                samples.append((time.monotonic() - t0, kib, dialled_now))
            time.sleep(0.2)
        if time.monotonic() - t0 > 600:
            proc.terminate()
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    seconds = time.monotonic() - t0
    dialled = Job.objects.filter(batch_id__in=batches, attempts__gt=0).count()
    if not samples:
        raise RuntimeError(f"no RSS samples; worker said: {stderr[-500:]}")
    start, mid = _at(samples, 0.1, calls), _at(samples, 0.5, calls)
    end = samples[-1][1]
    peak = max(s[1] for s in samples)
    growth = (end - start) / start
    ctx.report.raw["memory"] = {
        "calls": calls,
        "dialled": dialled,
        "seconds": seconds,
        "exit": proc.returncode,
        "rss_kib": samples[:: max(1, len(samples) // 200)],
        "stderr_tail": stderr[-1000:],
    }
    ctx.report.add(
        SECTION,
        f"worker RSS, --concurrency {CONCURRENCY}, {dialled:,} calls",
        peak / 1024,
        "MiB peak",
        target="flat: end <= 1.10x the 10% point",
        passed=growth <= 0.10 and proc.returncode == 0,
        ratio=end / start,
        key="memory",
        before=before.figure(
            "same:worker RSS, --concurrency 50, 10,000 calls:MiB peak"
        ),
        note=f"at 10% of calls: {start / 1024:.1f} MiB, 50%: {mid / 1024:.1f} MiB,"
        f" end:"
        f" {end / 1024:.1f} MiB; {seconds:.1f} s, {dialled / seconds:.0f} calls/s",
    )
    datagen.truncate_jobs()
