"""The kept job counts under a random storm of every kind of writer.

Eight threads, each with its own PostgreSQL connection, act as workers and
operators at once: claims with calls that complete, are retried or fail,
suspensions when the credits run out and resumptions when they are added,
pauses, resumes, cancels, deletes (with and without their jobs), single-job
cancels and imports. Meanwhile a real ``run_call_worker`` subprocess works
the same batches and is killed with SIGKILL in the middle of its round; its
leases are then recovered. At the end the kept counts must equal COUNT(*)
for every batch and status.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import OperationalError, connection, connections
from django.db.models.functions import Now
from django.utils import timezone

from accounts.credits import credits_add
from accounts.tests.factories import AccountFactory
from batches import services as batch_services
from batches.job_counts import job_count_drift, kept_counts
from batches.models import Batch
from batches.tests.factories import BatchFactory
from callcenter.actor import Actor
from callcenter.exceptions import DomainError
from jobs import billing, lifecycle
from jobs.claim import claim_jobs, promote_due_jobs
from jobs.dialers.base import CallResult, Outcome
from jobs.imports import jobs_import, rows_from_json
from jobs.models import Job, JobStatus
from jobs.services import job_cancel

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

THREADS = 8
ROUNDS = 30
ACTOR = Actor.system("storm")
OUTCOMES = [Outcome.ANSWERED, Outcome.ANSWERED, Outcome.BUSY, Outcome.FAILED]


class Storm:
    def __init__(self, account_id: int, seed: int) -> None:
        self.account_id = account_id
        self.seed = seed
        self.numbers = itertools.count(5_000_000)
        self.lock = threading.Lock()
        self.errors: list[BaseException] = []
        self.ops: dict[str, int] = {}
        self.deadlocks: list[str] = []

    def number(self) -> str:
        with self.lock:
            return f"+1415{next(self.numbers):07d}"

    def done(self, op: str) -> None:
        with self.lock:
            self.ops[op] = self.ops.get(op, 0) + 1

    def live_batch(self, rng: random.Random) -> Batch | None:
        batches = list(Batch.objects.filter(account_id=self.account_id))
        return rng.choice(batches) if batches else None

    def work(self, name: str, rng: random.Random) -> None:
        token = f"{name}-token"
        jobs = claim_jobs(worker_id=name, limit=rng.randint(1, 4), token=token)
        if not jobs:
            promote_due_jobs()
            return
        payable = billing.reserve_calls(jobs, worker_id=name, token=token)
        dialed = lifecycle.mark_dialed(jobs=payable, worker_id=name, token=token)
        results = [(job, CallResult(outcome=rng.choice(OUTCOMES))) for job in dialed]
        lifecycle.record_calls(
            worker_id=name,
            ended=[
                lifecycle.CallEnd(job.pk, job.dialed_at, "", result)
                for job, result in results
                if job.dialed_at is not None  # set by mark_dialed
            ],
            token=token,
        )
        billing.settle_calls([(job, 1.0, result.outcome) for job, result in results])
        self.done("round")

    def operate(self, rng: random.Random) -> None:
        batch = self.live_batch(rng)
        roll = rng.random()
        if batch is None:
            return
        if roll < 0.25:
            batch_services.batch_pause(batch=batch, actor=ACTOR, reason="storm")
            self.done("pause")
        elif roll < 0.5:
            batch_services.batch_resume(batch=batch, actor=ACTOR)
            self.done("resume")
        elif roll < 0.7:
            rows = [{"phone_number": self.number()} for _ in range(rng.randint(1, 5))]
            jobs_import(batch=batch, rows=rows_from_json(rows), actor=ACTOR)
            self.done("import")
        elif roll < 0.8:
            job = (
                Job.objects.filter(batch=batch)
                .exclude(status__in=["completed", "failed", "cancelled"])
                .order_by("?")
                .first()
            )
            if job:
                job_cancel(job=job, actor=ACTOR, reason="storm")
                self.done("job_cancel")
        elif roll < 0.9:
            from accounts.models import Account

            credits_add(
                account=Account.objects.get(pk=self.account_id),
                amount=rng.randint(5, 30),
                actor=ACTOR,
            )
            self.done("credits_add")
        elif roll < 0.95:
            batch_services.batch_cancel(batch=batch, actor=ACTOR, reason="storm")
            self.done("cancel")
        else:
            batch_services.batch_delete(
                batch=batch, actor=ACTOR, delete_jobs=rng.random() < 0.5
            )
            self.done("delete")

    def run(self, index: int) -> None:
        rng = random.Random(self.seed * 100 + index)
        name = f"storm-{index}"
        try:
            for _ in range(ROUNDS):
                try:
                    if rng.random() < 0.7:
                        self.work(name, rng)
                    else:
                        self.operate(rng)
                except DomainError:
                    self.done("refused")
                except OperationalError as exc:
                    # A deadlock between the services' own row locks (batch,
                    # account) rolls one transaction back; the counts must
                    # stay exact through that too. One over the counts'
                    # own rows or slots would be a failure of theirs.
                    if "deadlock detected" not in str(exc) or any(
                        name in str(exc)
                        for name in ("batches_batchjobcount", "advisory")
                    ):
                        raise
                    with self.lock:
                        self.deadlocks.append(str(exc).splitlines()[-1])
        except BaseException as exc:
            self.errors.append(exc)
        finally:
            connection.close()


def start_victim(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    url = f"postgres://{auth}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    log = tmp_path / "victim.log"
    proc = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "run_call_worker",
            "--concurrency=4",
            "--worker-id=victim",
        ],
        cwd=settings.BASE_DIR,
        env={
            **os.environ,
            "DATABASE_URL": url,
            "DJANGO_SETTINGS_MODULE": "callcenter.settings_test",
            "SIMULATED_SEED": "7",
            "SIMULATED_OUTCOMES": "answered=2,busy=1,no_answer=1",
            "SIMULATED_CALL_SECONDS": "0.05-0.3",
            "PYTHONUNBUFFERED": "1",
        },
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    return proc, log


def wait_for_calls_in_flight(proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if Job.objects.filter(
            claimed_by="victim", status=JobStatus.IN_PROGRESS, dialed_at__isnull=False
        ).exists():
            return
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    raise AssertionError(f"the worker never had a call in flight:\n{log.read_text()}")


# Busy and unanswered calls come back at once (the default waits 10-30 min).
NO_DELAY = {"busy": {"delay_seconds": 0}, "no_answer": {"delay_seconds": 0}}


@pytest.mark.parametrize("seed", [1, 2])
def test_job_counts__equal_count_star_after_a_random_storm_and_a_kill_9(
    seed, settings, tmp_path
):
    # Few credits: reservations run out during the storm and suspend jobs;
    # credits_add brings them back.
    account = AccountFactory(credits=60)
    for b in range(4):
        batch = BatchFactory(account=account, priority=b, retry_policy=NO_DELAY)
        Job.objects.bulk_create(
            Job(
                account=account,
                batch=batch,
                phone_number=f"+1415{b}{i:06d}",
                status=JobStatus.PENDING if i % 5 else JobStatus.SCHEDULED,
                scheduled_at=None if i % 5 else timezone.now(),
            )
            for i in range(40)
        )
    victim, log = start_victim(tmp_path)
    storm = Storm(account.pk, seed)
    try:
        wait_for_calls_in_flight(victim, log)
        threads = [
            threading.Thread(target=storm.run, args=(i,)) for i in range(THREADS)
        ]
        for thread in threads:
            thread.start()
        # Mid-round: the storm is running and the worker holds calls.
        wait_for_calls_in_flight(victim, log)
        victim.send_signal(signal.SIGKILL)
        victim.wait(30)
        for thread in threads:
            thread.join(300)
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
    assert storm.errors == [], storm.errors
    assert victim.returncode == -signal.SIGKILL
    # The dead worker's leases: moved past expiry (not the clock), recovered.
    Job.objects.filter(claimed_by="victim", status=JobStatus.IN_PROGRESS).update(
        lease_expires_at=Now() - timedelta(seconds=1)
    )
    lifecycle.recover_expired_leases(recoverer="storm-rescuer")
    connections.close_all()

    assert storm.ops.get("round", 0) > THREADS
    assert job_count_drift() == []
    batch_pks = list(Batch.all_objects.values_list("pk", flat=True))
    kept = kept_counts(batch_pks)
    for pk in batch_pks:
        actual: dict[str, int] = {}
        for status in Job.objects.filter(batch_id=pk).values_list("status", flat=True):
            actual[status] = actual.get(status, 0) + 1
        assert {s: n for s, n in kept[pk].items() if n} == actual, pk
    # The storm reached the statuses it was meant to.
    seen = set(Job.objects.values_list("status", flat=True))
    assert len(seen) >= 3, seen
