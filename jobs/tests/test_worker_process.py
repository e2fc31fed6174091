"""Acceptance tests: real ``run_call_worker`` subprocesses, signalled, killed
and cut off from PostgreSQL, against the test database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.db.models.functions import Now

from batches.services import batch_pause
from batches.tests.factories import BatchFactory
from callcenter.actor import Actor
from jobs.claim import claim_jobs
from jobs.lifecycle import WORKER_LOST, WORKER_STOPPED
from jobs.models import Job, JobStatus
from jobs.notify import notify_jobs_available
from jobs.services import job_cancel
from jobs.tests.factories import JobFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ACTOR = Actor.system("tests")


class Worker:
    def __init__(self, proc: subprocess.Popen, log: Path) -> None:
        self.proc = proc
        self.log = log

    @property
    def output(self) -> str:
        return self.log.read_text()

    def wait(self, timeout: float = 60) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"worker did not exit:\n{self.output}") from None


@pytest.fixture
def start_worker(tmp_path):
    workers: list[Worker] = []

    def start(*args: str, **env: str) -> Worker:
        db = connection.settings_dict
        auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
        url = f"postgres://{auth}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
        log = tmp_path / f"worker-{len(workers)}.log"
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "run_call_worker", *args],
            cwd=settings.BASE_DIR,
            env={
                **os.environ,
                "DATABASE_URL": url,
                "DJANGO_SETTINGS_MODULE": "callcenter.settings_test",
                "SIMULATED_SEED": "1",
                "SIMULATED_OUTCOMES": "answered=1",
                "PYTHONUNBUFFERED": "1",
                **env,
            },
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )
        worker = Worker(proc, log)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        if worker.proc.poll() is None:
            worker.proc.kill()
            worker.proc.wait()


def wait_until(
    predicate: Callable[[], bool], worker: Worker, what: str, timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if worker.proc.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}:\n{worker.output}")


def dialled(worker_id: str) -> int:
    return Job.objects.filter(
        status=JobStatus.IN_PROGRESS, claimed_by=worker_id, dialed_at__isnull=False
    ).count()


def test_run_call_worker__kill_9_mid_call_is_resolved_by_the_crash_policy(
    account, start_worker
):
    batch = BatchFactory(account=account)
    JobFactory.create_batch(4, batch=batch)
    doomed = start_worker(
        "--concurrency=3",
        "--worker-id=doomed",
        SIMULATED_CALL_SECONDS="60",
        JOB_LEASE_SECONDS="5",
    )
    wait_until(lambda: dialled("doomed") == 3, doomed, "three calls in flight")
    # The fourth job: claimed by the same worker, which dies before dialling it.
    [undialled] = claim_jobs(worker_id="doomed", limit=1)

    doomed.proc.send_signal(signal.SIGKILL)
    doomed.wait()
    in_calls = list(Job.objects.filter(claimed_by="doomed", dialed_at__isnull=False))
    assert len(in_calls) == 3
    # Leases are found once they expire: move them past expiry, not the clock.
    Job.objects.filter(claimed_by="doomed").update(
        lease_expires_at=Now() - timedelta(seconds=1)
    )
    rescuer = start_worker(
        "--burst", "--worker-id=rescuer", SIMULATED_CALL_SECONDS="0.05"
    )

    assert rescuer.wait() == 0, rescuer.output
    for job in in_calls:
        job.refresh_from_db()
        assert job.status == JobStatus.FAILED
        assert job.last_error == WORKER_LOST
        assert job.attempts == 1
        assert [e["outcome"] for e in job.attempt_log] == ["worker_lost"]
    undialled.refresh_from_db()
    assert undialled.status == JobStatus.COMPLETED
    assert undialled.attempts == 1  # the lost claim spent no attempt
    assert [e["worker"] for e in undialled.attempt_log] == ["rescuer"]
    assert "job.lease_recovered" in rescuer.output


def test_run_call_worker__sigterm_lets_calls_finish_and_exits_0(
    account, start_worker, tmp_path
):
    batch = BatchFactory(account=account)
    JobFactory.create_batch(5, batch=batch)
    release = tmp_path / "release"  # the calls last until this file exists
    worker = start_worker(
        "--concurrency=2",
        "--worker-id=w",
        SIMULATED_CALL_SECONDS="0",
        SIMULATED_HOLD_FILE=str(release),
    )
    wait_until(lambda: dialled("w") == 2, worker, "two calls in flight")

    worker.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: "worker.stopping" in worker.output, worker, "the stop")
    release.touch()

    assert worker.wait() == 0, worker.output
    assert Job.objects.filter(status=JobStatus.COMPLETED).count() == 2
    # It claimed nothing after the signal.
    assert Job.objects.filter(status=JobStatus.PENDING, claimed_by="").count() == 3


def test_run_call_worker__sigterm_past_the_shutdown_timeout_hangs_up(
    account, start_worker
):
    JobFactory(batch=BatchFactory(account=account))
    worker = start_worker(
        "--worker-id=w", "--shutdown-timeout=0.5", SIMULATED_CALL_SECONDS="60"
    )
    wait_until(lambda: dialled("w") == 1, worker, "a call in flight")

    worker.proc.send_signal(signal.SIGTERM)

    assert worker.wait(timeout=20) == 0, worker.output
    job = Job.objects.get()
    assert job.status == JobStatus.FAILED
    assert job.last_error == WORKER_STOPPED
    assert job.result["outcome"] == "answered"
    assert job.result["hung_up"] is True


def test_run_call_worker__cancel_during_a_call_hangs_up_and_keeps_the_outcome(
    account, start_worker, system_actor
):
    job = JobFactory(batch=BatchFactory(account=account))
    worker = start_worker(
        "--worker-id=w",
        "--max-jobs=1",
        SIMULATED_CALL_SECONDS="60",
        JOB_LEASE_SECONDS="5",
    )
    wait_until(lambda: dialled("w") == 1, worker, "a call in flight")

    job_cancel(job=job, actor=system_actor, reason="Wrong script")

    assert worker.wait(timeout=30) == 0, worker.output
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert job.cancel_reason == "Wrong script"
    assert job.result["outcome"] == "answered"
    assert job.result["hung_up"] is True
    assert job.result["duration_seconds"] < 30
    assert "job.hangup" in worker.output


@pytest.mark.usefixtures("database_route")
def test_run_call_worker__calls_in_progress_when_a_pause_lands_finish(
    account, start_worker, system_actor, tmp_path
):
    batch = BatchFactory(account=account)
    JobFactory.create_batch(4, batch=batch)
    release = tmp_path / "release"  # the calls last until this file exists
    worker = start_worker(
        "--concurrency=2",
        "--burst",
        "--worker-id=w",
        SIMULATED_CALL_SECONDS="0",
        SIMULATED_HOLD_FILE=str(release),
    )
    wait_until(lambda: dialled("w") == 2, worker, "two calls in flight")

    batch_pause(batch=batch, actor=system_actor)
    release.touch()

    assert worker.wait() == 0, worker.output
    assert Job.objects.filter(status=JobStatus.COMPLETED).count() == 2
    assert Job.objects.filter(status=JobStatus.PENDING, claimed_by="").count() == 2


def test_run_call_worker__survives_its_connections_being_terminated(
    account, start_worker
):
    batch = BatchFactory(account=account)
    JobFactory.create_batch(60, batch=batch)
    worker = start_worker(
        "--concurrency=4",
        "--worker-id=survivor",
        SIMULATED_CALL_SECONDS="0.2-0.6",
        JOB_LEASE_SECONDS="5",
        WORKER_DB_BACKOFF_MAX_SECONDS="0.5",
    )
    completed = Job.objects.filter(status=JobStatus.COMPLETED)
    wait_until(completed.exists, worker, "the first call")
    kills = 0
    deadline = time.monotonic() + 90
    while completed.count() < 60 and time.monotonic() < deadline:
        # A connection lost between two rounds is replaced quietly by the
        # health check; keep cutting until one is lost in the middle of a
        # round, which the worker must notice and recover from.
        if kills < 5 or ("worker.db_error" not in worker.output and kills < 100):
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
                kills += cursor.fetchone()[0] > 0
        time.sleep(0.15)
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.wait() == 0, worker.output

    assert kills >= 5
    assert "worker.db_error" in worker.output
    assert completed.count() == 60, worker.output
    for job in Job.objects.all():
        # Each contact was called exactly once.
        assert job.attempts == 1, job.attempt_log
        assert len(job.attempt_log) == 1, job.attempt_log


@pytest.mark.usefixtures("database_route")
def test_run_call_worker__idle_worker_wakes_on_notify_not_on_polling(
    account, start_worker
):
    batch = BatchFactory(account=account)
    worker = start_worker("--worker-id=w", WORKER_POLL_SECONDS="60")
    wait_until(lambda: "claim.empty" in worker.output, worker, "the worker idle")
    wait_until(lambda: "LISTEN" in listening_queries(), worker, "the LISTEN")

    with transaction.atomic():
        job = JobFactory(batch=batch)
        notify_jobs_available()

    # Far sooner than the 60 s poll: only the notification can explain it.
    wait_until(
        lambda: Job.objects.filter(pk=job.pk, dialed_at__isnull=False).exists(),
        worker,
        "the job to be dialled",
        timeout=10,
    )


def listening_queries() -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT string_agg(query, ' ') FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = %s",
            ["callcenter-worker-listen"],
        )
        return cursor.fetchone()[0] or ""


@pytest.mark.parametrize(
    ("args", "env", "nicer_by"),
    [((), {}, 10), ((), {"WORKER_NICE": "4"}, 4), (("--nice=0",), {}, 0)],
)
def test_run_call_worker__yields_the_cpu_to_the_web_process(
    start_worker, args, env, nicer_by
):
    """WORKER_NICE (default 10), or --nice, lowers the worker's CPU priority."""
    worker = start_worker("--concurrency=1", *args, **env)
    wait_until(lambda: "worker started" in worker.output, worker, "the start")
    expected = min(os.getpriority(os.PRIO_PROCESS, 0) + nicer_by, 19)
    assert os.getpriority(os.PRIO_PROCESS, worker.proc.pid) == expected
    assert f"nice={expected}" in worker.output
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.wait() == 0, worker.output


def test_run_call_worker__a_second_process_with_the_same_id_leaves_the_first_ones_calls(
    account, start_worker
):
    """Two processes started with one --worker-id: neither may hand the other's
    live calls back to the queue (they would be redialled), and each logs an
    error once it sees the id in use by the other."""
    batch = BatchFactory(account=account)
    first_job = JobFactory(batch=batch)
    # Long polls: the workers take new work only when told to (NOTIFY), or
    # at start, so the test decides which of them claims which job.
    calls = {"SIMULATED_CALL_SECONDS": "120", "JOB_LEASE_SECONDS": "5"}
    first = start_worker(
        "--concurrency=2",
        "--worker-id=dup",
        "--shutdown-timeout=0.5",
        WORKER_POLL_SECONDS="60",
        **calls,
    )
    wait_until(lambda: dialled("dup") == 1, first, "the first process's call")
    # Once listening, the first process is not woken again until a NOTIFY.
    wait_until(lambda: "LISTEN" in listening_queries(), first, "the LISTEN")
    # The listener wakes the worker once when it connects; that wake must be
    # spent (a claim that finds nothing) before the second job exists, or
    # the first process may take it.
    wait_until(lambda: "claim.empty" in first.output, first, "the spent wake")
    second_job = JobFactory(batch=batch)
    second = start_worker(
        "--concurrency=1",
        "--worker-id=dup",
        "--shutdown-timeout=0.5",
        WORKER_POLL_SECONDS="60",
        **calls,
    )
    wait_until(lambda: dialled("dup") == 2, second, "the second process's call")
    # The second process is full: only the first one can take this job, and
    # it does so after the second one started.
    with transaction.atomic():
        third_job = JobFactory(batch=batch)
        notify_jobs_available()
    wait_until(lambda: dialled("dup") == 3, first, "the first process's 2nd call")
    first_calls = list(Job.objects.filter(pk__in=[first_job.pk, third_job.pk]))
    tokens = dict(Job.objects.values_list("pk", "claim_token"))
    assert tokens[first_job.pk] == tokens[third_job.pk] != tokens[second_job.pk]
    for worker in (first, second):
        wait_until(
            lambda worker=worker: "worker.id_in_use" in worker.output,
            worker,
            "the error about the worker id",
        )

    second.proc.send_signal(signal.SIGTERM)
    assert second.wait() == 0, second.output

    for job in first_calls:
        fresh = Job.objects.get(pk=job.pk)
        # Still the first process's call: not released, not redialled.
        assert fresh.status == JobStatus.IN_PROGRESS, second.output
        assert fresh.dialed_at == job.dialed_at
        assert fresh.attempts == 1
        assert fresh.attempt_log == []
    second_job.refresh_from_db()
    assert second_job.status == JobStatus.FAILED  # hung up on shutdown
    assert second_job.last_error == WORKER_STOPPED
    first.proc.send_signal(signal.SIGTERM)
    assert first.wait() == 0, first.output
    for job in Job.objects.all():
        assert len(job.attempt_log) == 1, job.attempt_log
