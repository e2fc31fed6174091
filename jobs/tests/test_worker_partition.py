"""A network partition, with real network isolation: a ``run_call_worker``
in its own network namespace reaches PostgreSQL (a private cluster) over a
veth pair. It takes calls; the link is cut for longer than its leases; a
worker on the host recovers the jobs; the link heals. The stale worker's
late writes must be refused (fencing), no job may end with two outcomes,
no job that was possibly dialled may be dialled again, and the stale worker
must carry on with new work."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection, transaction

from batches.tests.factories import BatchFactory
from jobs.lifecycle import WORKER_LOST
from jobs.models import CallAttempt, Job, JobStatus
from jobs.notify import notify_jobs_available
from jobs.tests.factories import JobFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

DIALLING = re.compile(r"action=job\.dialling\b.*?\bjob_id=(\d+)")
REFUSED = re.compile(r"action=job\.fenced_write_refused\b.*")
ENDED = re.compile(r"action=job\.call_ended(?:_unheld)?\b")
# The stale worker notices a dead link within seconds instead of TCP's
# minutes (docs/deploy.md#scaling-to-n-worker-hosts).
DETECT = (
    "connect_timeout=2&keepalives_idle=1&keepalives_interval=1"
    "&keepalives_count=2&tcp_user_timeout=2000"
)


class Proc:
    def __init__(self, args: list[str], log: Path, env: dict[str, str]) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            args,
            cwd=settings.BASE_DIR,
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )

    @property
    def output(self) -> str:
        return self.log.read_text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"did not exit:\n{self.output}") from None


def wait_for(predicate, procs, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except Exception:
            connection.close()
        for p in procs:
            assert p.proc.poll() is None, f"{p.log.name} exited:\n{p.output}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n" + (
            "\n".join(f"--- {p.log.name}\n{p.output[-4000:]}" for p in procs)
        )
        time.sleep(0.1)


def test_partition__stale_worker_is_fenced_and_carries_on(
    account, netns, partitioned_database, tmp_path
):
    db = connection.settings_dict
    hold = tmp_path / "hold"  # the calls last until this file exists
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "callcenter.settings_test",
        "SIMULATED_SEED": "1",
        "SIMULATED_OUTCOMES": "answered=1",
        "SIMULATED_CALL_SECONDS": "0",
        "SIMULATED_HOLD_FILE": str(hold),
        "JOB_LEASE_SECONDS": "5",
        "WORKER_DB_BACKOFF_MAX_SECONDS": "0.5",
        "PYTHONUNBUFFERED": "1",
    }
    port, name = partitioned_database.port, db["NAME"]
    worker = [sys.executable, "manage.py", "run_call_worker", "--concurrency=4"]

    first = BatchFactory(account=account)
    JobFactory.create_batch(4, batch=first)
    stale = Proc(
        netns.command(*worker, "--worker-id=stale"),
        tmp_path / "stale.log",
        {
            **env,
            "DATABASE_URL": f"postgres://postgres@{netns.host_ip}:{port}/{name}?{DETECT}",
        },
    )
    procs = [stale]
    stale_calls = Job.objects.filter(
        batch=first, claimed_by="stale", dialed_at__isnull=False
    )
    wait_for(lambda: stale_calls.count() == 4, procs, "four calls in the namespace")

    netns.cut()
    # The calls end while the worker cannot report them.
    hold.touch()
    rescuer = Proc(
        [*worker, "--worker-id=rescuer"],
        tmp_path / "rescuer.log",
        {**env, "DATABASE_URL": f"postgres://postgres@127.0.0.1:{port}/{name}"},
    )
    procs.append(rescuer)
    # Its leases expire and the host's worker applies the crash policy:
    # dialled, so failed as "worker lost", never dialled again.
    wait_for(
        lambda: (
            not Job.objects.filter(batch=first, status=JobStatus.IN_PROGRESS).exists()
        ),
        procs,
        "the host's worker to recover the stale worker's jobs",
    )
    netns.heal()
    wait_for(
        lambda: len(ENDED.findall(stale.output)) >= 4,
        procs,
        "the stale worker to report its calls",
    )
    assert rescuer.stop() == 0, rescuer.output
    procs.remove(rescuer)

    # The stale worker carries on: new work is its alone now.
    second = BatchFactory(account=account)
    with transaction.atomic():
        JobFactory.create_batch(3, batch=second)
        notify_jobs_available()
    wait_for(
        lambda: (
            Job.objects.filter(
                batch=second, status=JobStatus.COMPLETED, claimed_by="stale"
            ).count()
            == 3
        ),
        procs,
        "the stale worker to take new calls",
    )
    assert stale.stop() == 0, stale.output

    # One outcome each: the crash policy's, not overwritten by the late one.
    first_jobs = list(Job.objects.filter(batch=first))
    for job in first_jobs:
        assert job.status == JobStatus.FAILED, job.attempt_log
        assert job.last_error == WORKER_LOST
        assert job.attempts == 1
    # Late writes refused, each logged with the stale token and the job's
    # current one.
    refused = REFUSED.findall(stale.output)
    assert all("token=" in line and "holder_token=" in line for line in refused)
    refused_ids = {
        int(m) for line in refused for m in re.findall(r"\bjob_id=(\d+)", line)
    }
    assert refused_ids == {job.pk for job in first_jobs}
    # Possibly dialled, so never dialled again, by either worker.
    dials = Counter(
        int(job_id) for p in (stale, rescuer) for job_id in DIALLING.findall(p.output)
    )
    second_ids = set(Job.objects.filter(batch=second).values_list("id", flat=True))
    assert dials == Counter({pk: 1 for pk in {j.pk for j in first_jobs} | second_ids})
    attempts = Counter(CallAttempt.objects.values_list("job_id", flat=True))
    assert set(attempts.values()) == {1}
    assert "worker.db_error" in stale.output
