"""3. Start latency: from a job's insert, or its batch's resume, to its claim
by an idle worker, with LISTEN/NOTIFY and with polling alone.

The worker is a real CallWorker subprocess (bench.worker_proc) with the
simulated dialer and zero-length calls. Each sample waits until the worker is
idle again, then a random 0.1-0.4 s more, so that samples fall at every
phase of its poll. The latency is the job's claimed_at (set by the claim
statement, database clock) minus the wall clock at which the insert or resume
committed; both clocks are this machine's.
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime

from django.db import connection, transaction

from bench import before, datagen
from bench.context import Context
from bench.report import percentile
from bench.server import ROOT

SECTION = "3 start latency"


def _worker(listen: bool, worker_id: str) -> subprocess.Popen[bytes]:
    env = os.environ.copy()
    env.update(
        SIMULATED_CALL_SECONDS="0",
        SIMULATED_OUTCOMES="answered=1",
        SIMULATED_SEED="1",
        LOG_LEVEL="WARNING",
    )
    cmd = [sys.executable, "-m", "bench.worker_proc", "--worker-id", worker_id]
    if not listen:
        cmd.append("--no-listen")
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _wait_claimed(job_id: int, timeout: float = 10.0) -> datetime | None:
    from jobs.models import Job

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = (
            Job.objects.filter(pk=job_id, status="completed")
            .values_list("claimed_at", flat=True)
            .first()
        )
        if row:
            return row
        time.sleep(0.005)
    return None


@contextlib.contextmanager
def _commit_clock() -> Iterator[list[float]]:
    """The wall clock at the commit, before any on-commit handler runs
    (signals, webhooks): the service's own transaction joins this one."""
    stamp: list[float] = []
    with transaction.atomic():
        transaction.on_commit(lambda: stamp.append(time.time()))
        yield stamp


def _insert_job(account_id: int, batch_id: int, n: int) -> tuple[int, float]:
    """One job through the import service, as the API adds jobs (it notifies,
    and reopens a batch that had been completed)."""
    from batches.models import Batch
    from callcenter.actor import Actor
    from jobs.imports import jobs_import, rows_from_json
    from jobs.models import Job

    phone = f"+1415{5000000 + n:07d}"
    with _commit_clock() as stamp:
        result = jobs_import(
            batch=Batch.objects.get(pk=batch_id),
            rows=rows_from_json([{"phone_number": phone}]),
            actor=Actor.system("bench"),
        )
    committed = stamp[0]
    if result.errors:
        raise RuntimeError(f"import failed: {result.errors[0].as_dict()}")
    return Job.objects.get(batch_id=batch_id, phone_number=phone).pk, committed


def _resume_job(account_id: int, n: int) -> tuple[int, float]:
    from batches.models import Batch
    from batches.services import batch_resume
    from callcenter.actor import Actor
    from jobs.models import Job

    (batch_pk,) = datagen.create_batches(
        account_id, 1, active=False, prefix=f"lat-resume-{n}"
    )
    job = Job.objects.create(
        account_id=account_id, batch_id=batch_pk, phone_number=f"+1651{2000000 + n:07d}"
    )
    time.sleep(0.05)
    with _commit_clock() as stamp:
        batch_resume(batch=Batch.objects.get(pk=batch_pk), actor=Actor.system("bench"))
    return job.pk, stamp[0]


def _samples(ctx: Context, listen: bool, account_id: int, batch_id: int) -> dict:
    out: dict[str, list[float]] = {"insert": [], "resume": [], "lost": []}
    proc = _worker(listen, f"bench-latency-{'listen' if listen else 'poll'}")
    try:
        # Warm-up, not counted: the worker has started, connected and claimed.
        job_id, _ = _insert_job(account_id, batch_id, 900_000 + (0 if listen else 1))
        if _wait_claimed(job_id, timeout=60) is None:
            raise RuntimeError("the worker did not claim its warm-up job")
        rng = random.Random(7)
        for i in range(ctx.sizes.latency_samples):
            for kind in ("insert", "resume"):
                time.sleep(rng.uniform(0.1, 0.4))
                n = i * 2 + (kind == "resume") + (0 if listen else 500_000)
                if kind == "insert":
                    job_id, committed = _insert_job(account_id, batch_id, n)
                else:
                    job_id, committed = _resume_job(account_id, n)
                claimed = _wait_claimed(job_id)
                if claimed is None:
                    out["lost"].append(job_id)
                    continue
                out[kind].append((claimed.timestamp() - committed) * 1000)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return out


def run(ctx: Context) -> None:
    from bench.ours import _require_claim

    _require_claim()
    datagen.truncate_jobs()
    account_id = datagen.create_account("bench-latency")
    (batch_id,) = datagen.create_batches(account_id, 1, active=True, prefix="lat")
    connection.close()
    results = {
        "notify": _samples(ctx, True, account_id, batch_id),
        "polling": _samples(ctx, False, account_id, batch_id),
    }
    ctx.report.raw["latency"] = results
    from django.conf import settings

    for mode, data in results.items():
        for kind in ("insert", "resume"):
            lat = data[kind]
            p50, p99 = percentile(lat, 50), percentile(lat, 99)
            is_notify = mode == "notify"
            ctx.report.add(
                SECTION,
                f"{kind} -> claim, {'LISTEN/NOTIFY' if is_notify else 'polling alone'}"
                f" p50 ({len(lat)} samples)",
                p50,
                "ms",
                target="p50 <= 50 ms" if is_notify else "",
                passed=(p50 <= 50) if is_notify else None,
                key=f"latency:{kind}:{mode}",
                before=before.figure(
                    f"same:{kind} -> claim,"
                    f" {'LISTEN/NOTIFY' if is_notify else 'polling alone'}"
                    " p50 (30 samples):ms"
                ),
                note=f"p99 {p99:.1f} ms"
                + (
                    ""
                    if is_notify
                    else f"; poll every {settings.WORKER_POLL_SECONDS} s"
                )
                + (
                    f"; {len(data['lost'])} not claimed in 10 s" if data["lost"] else ""
                ),
            )
    datagen.truncate_jobs()
