"""The caps under real concurrency: 8 worker threads, each with its own
PostgreSQL connection, running the worker's own steps (claim, reserve, dial
mark, record) against the same numbers, batches and accounts.

Each thread keeps its calls open until it has made its next claim, so
calls overlap. What the threads see is checked in memory: a call is taken out of
the "in a call" set *before* its outcome is recorded, so two calls to one
number seen at once mean two dial marks of that number committed while
both calls were open.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models.functions import Now

from accounts.tests.factories import AccountFactory
from batches.tests.factories import BatchFactory
from jobs import billing, lifecycle
from jobs.claim import claim_jobs
from jobs.dialers.base import CallResult, Outcome
from jobs.models import CallAttempt, Job, JobStatus

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
    pytest.mark.postgres_only,
]

WORKERS = 8
NUMBERS = [f"+1415555{i:04d}" for i in range(6)]
ANSWERED = CallResult(outcome=Outcome.ANSWERED, duration_seconds=1)


class Race:
    """Worker threads that dial through the real gate and track, in memory,
    the numbers in a call and the calls in progress per batch and account."""

    def __init__(self, *, limit: int, dial: bool = True) -> None:
        self.lock = threading.Lock()
        self.in_call: dict[str, int] = {}
        self.twice_at_once: list[str] = []
        self.dials: Counter[tuple[int, str]] = Counter()
        self.in_progress: Counter[tuple[str, int | None]] = Counter()
        self.peak: Counter[tuple[str, int | None]] = Counter()
        self.errors: list[BaseException] = []
        self.limit = limit
        self.dial = dial

    def run(self, name: str) -> None:
        held: list[Job] = []
        try:
            while True:
                # The calls of the last round stay open during this claim.
                claimed = self.claim(name)
                self.finish(name, held)
                held = claimed
                if held:
                    continue
                if not Job.objects.filter(status=JobStatus.PENDING).exists():
                    return
                time.sleep(0.001)  # let the others move on
        except BaseException as exc:
            self.errors.append(exc)
        finally:
            connection.close()

    def claim(self, name: str) -> list[Job]:
        jobs = claim_jobs(worker_id=name, token=name, limit=self.limit)
        with self.lock:
            for job in jobs:
                for key in (("batch", job.batch_id), ("account", job.account_id)):
                    self.in_progress[key] += 1
                    self.peak[key] = max(self.peak[key], self.in_progress[key])
        if not self.dial:
            return jobs
        payable = billing.reserve_calls(jobs, worker_id=name, token=name)
        dialed = lifecycle.mark_dialed(jobs=payable, worker_id=name, token=name)
        with self.lock:
            for job in jobs:
                if job not in dialed:  # deferred by a cap: no longer in progress
                    self.in_progress["batch", job.batch_id] -= 1
                    self.in_progress["account", job.account_id] -= 1
            for job in dialed:
                if job.phone_number in self.in_call:
                    self.twice_at_once.append(job.phone_number)
                self.in_call[job.phone_number] = job.pk
                self.dials[job.account_id, job.phone_number] += 1
        return dialed

    def finish(self, name: str, held: list[Job]) -> None:
        if not held:
            return
        with self.lock:
            for job in held:
                if self.in_call.get(job.phone_number) == job.pk:
                    del self.in_call[job.phone_number]
                self.in_progress["batch", job.batch_id] -= 1
                self.in_progress["account", job.account_id] -= 1
        if not self.dial:
            Job.objects.filter(pk__in=[j.pk for j in held]).update(
                status=JobStatus.COMPLETED, finished_at=Now()
            )
            return
        lifecycle.record_calls(
            worker_id=name,
            token=name,
            ended=[
                lifecycle.CallEnd(
                    job.pk, job.dialed_at, "", ANSWERED, attempt_token=job.attempt_token
                )
                for job in held
                if job.dialed_at is not None
            ],
        )

    def go(self) -> None:
        threads = [
            threading.Thread(target=self.run, args=(f"w-{i}",), daemon=True)
            for i in range(WORKERS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        assert not self.errors, self.errors


def test_dial_gate__eight_workers__one_call_at_a_time_per_number_and_3_per_24h():
    # The same six numbers in 8 batches of one account and 4 of another:
    # 72 jobs, but each account may call each number 3 times in 24 hours,
    # and no number may be in two calls at once, whatever the account.
    first = AccountFactory(credits=10_000)
    second = AccountFactory(credits=10_000)
    for account, batches in ((first, 8), (second, 4)):
        for _ in range(batches):
            batch = BatchFactory(account=account)
            Job.objects.bulk_create(
                Job(account=account, batch=batch, phone_number=number)
                for number in NUMBERS
            )

    race = Race(limit=3)
    race.go()
    # Deferred because the number was in a call: due again at once, as if
    # its minute had passed. Those deferred by the 24-hour cap stay out.
    Job.objects.filter(
        status=JobStatus.SCHEDULED, scheduled_at__lt=Now() + timedelta(hours=1)
    ).update(status=JobStatus.PENDING)
    while Job.objects.filter(status=JobStatus.PENDING).exists():
        race.go()
        Job.objects.filter(
            status=JobStatus.SCHEDULED, scheduled_at__lt=Now() + timedelta(hours=1)
        ).update(status=JobStatus.PENDING)

    assert race.twice_at_once == []
    expected = {(a.pk, n): 3 for a in (first, second) for n in NUMBERS}
    assert dict(race.dials) == expected
    assert CallAttempt.objects.count() == 36
    assert Job.objects.filter(status=JobStatus.COMPLETED).count() == 36
    # The rest wait for the cap, with no attempt spent and nothing charged
    # beyond the reservation given back.
    waiting = Job.objects.exclude(status=JobStatus.COMPLETED)
    assert waiting.count() == 36
    assert set(waiting.values_list("status", flat=True)) == {JobStatus.SCHEDULED}
    assert set(waiting.values_list("attempts", flat=True)) == {0}
    for job in waiting:
        oldest = (
            CallAttempt.objects.filter(
                account_pk=job.account_id, phone_number=job.phone_number
            )
            .order_by("started_at")
            .values_list("started_at", flat=True)[0]
        )
        assert job.scheduled_at == oldest + timedelta(hours=24)


def test_claim__eight_workers_never_exceed_the_batch_or_account_concurrency_cap():
    capped_account = AccountFactory(credits=10_000, max_concurrent_calls=5)
    capped_batch = BatchFactory(account=capped_account, max_concurrent_calls=3)
    sibling = BatchFactory(account=capped_account)  # only the account's cap
    other = BatchFactory(account=AccountFactory(credits=10_000))  # no cap
    for prefix, batch in enumerate((capped_batch, sibling, other)):
        Job.objects.bulk_create(
            Job(
                account_id=batch.account_id,
                batch=batch,
                phone_number=f"+1{prefix + 201:03d}{i:07d}",
            )
            for i in range(150)
        )

    race = Race(limit=4, dial=False)
    race.go()

    assert Job.objects.exclude(status=JobStatus.COMPLETED).count() == 0
    assert race.peak["batch", capped_batch.pk] <= 3
    assert race.peak["account", capped_account.pk] <= 5
    # The uncapped batch ran wider than the caps.
    assert race.peak["batch", other.pk] > 5
