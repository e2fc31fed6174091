"""The claim under real concurrency: threads, each with its own PostgreSQL
connection, claiming while a controller pauses, cancels and deletes batches.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import connection

from accounts.tests.factories import AccountFactory
from batches import services as batch_services
from batches.models import Batch
from batches.services import batch_cancel, batch_delete, batch_pause, batch_resume
from batches.tests.factories import BatchFactory
from jobs.claim import claim_jobs
from jobs.models import Job, JobStatus

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

CLAIMERS = 8


def make_jobs(batch: Batch, n: int, prefix: int) -> None:
    Job.objects.bulk_create(
        [
            Job(
                account_id=batch.account_id,
                batch=batch,
                phone_number=f"+1{prefix:03d}{i:07d}",
            )
            for i in range(n)
        ],
        batch_size=5000,
    )


class Claimers:
    def __init__(self, n: int, limit: int, until_drained: bool) -> None:
        self.stop = threading.Event()
        self.claims: dict[str, list[int]] = {f"claimer-{i}": [] for i in range(n)}
        # Claims each claimer has finished (committed or found nothing).
        self.rounds = dict.fromkeys(self.claims, 0)
        self.errors: list[BaseException] = []
        self.limit = limit
        self.until_drained = until_drained
        self.threads = [
            threading.Thread(target=self.run, args=(name,), daemon=True)
            for name in self.claims
        ]

    def run(self, name: str) -> None:
        try:
            while not self.stop.is_set():
                jobs = claim_jobs(worker_id=name, limit=self.limit)
                self.claims[name].extend(job.pk for job in jobs)
                self.rounds[name] += 1
                if jobs:
                    continue
                if (
                    self.until_drained
                    and not Job.objects.filter(status=JobStatus.PENDING).exists()
                ):
                    return
                time.sleep(0.001)
        except BaseException as exc:
            self.errors.append(exc)
        finally:
            connection.close()

    def all_claims(self) -> list[int]:
        return [pk for claims in self.claims.values() for pk in claims]

    def wait_for_claims_in_flight(self, timeout: float = 60) -> None:
        """Return once every claimer has finished a claim it began before
        this call: any claim that was in flight then has committed."""
        started = dict(self.rounds)
        deadline = time.monotonic() + timeout
        while any(self.rounds[n] <= started[n] for n in started):
            assert not self.errors, self.errors
            assert time.monotonic() < deadline, f"claimers stuck: {self.rounds}"
            time.sleep(0.001)


@contextmanager
def claimers(
    n: int = CLAIMERS, *, limit: int = 5, until_drained: bool = False
) -> Iterator[Claimers]:
    group = Claimers(n, limit, until_drained)
    for thread in group.threads:
        thread.start()
    try:
        yield group
    finally:
        if not until_drained:
            group.stop.set()
        for thread in group.threads:
            thread.join(timeout=120)
        assert not group.errors, group.errors


def claimed_count(batch: Batch) -> int:
    """Jobs of the batch any claim has taken (a claim always sets claimed_by,
    and neither pause, cancel nor delete clears it)."""
    return Job.objects.filter(batch=batch).exclude(claimed_by="").count()


@pytest.mark.usefixtures("database_route")
def test_claim_jobs__eight_claimers_never_claim_a_job_twice():
    account = AccountFactory()
    for prefix in range(4):
        make_jobs(BatchFactory(account=account, priority=prefix), 5000, prefix)

    with claimers(limit=10, until_drained=True) as group:
        pass

    claimed = group.all_claims()
    assert len(claimed) == 20_000
    duplicates = [pk for pk, n in Counter(claimed).items() if n > 1]
    assert duplicates == []
    assert Job.objects.filter(status=JobStatus.IN_PROGRESS).count() == 20_000
    # Every job is held by the claimer that saw it come back.
    for name, ids in group.claims.items():
        assert not Job.objects.filter(id__in=ids).exclude(claimed_by=name).exists()
    assert sum(1 for ids in group.claims.values() if ids) > 1


def wait_for_claims(batch: Batch, baseline: int, timeout: float = 30) -> None:
    """Wait until the claimers are taking this batch's jobs, so every pause
    lands among claims in flight (on a loaded machine they can lag)."""
    deadline = time.monotonic() + timeout
    while claimed_count(batch) <= baseline:
        assert time.monotonic() < deadline, f"no claim of {batch} in {timeout}s"
        time.sleep(0.001)


def assert_no_claim_after(operation, batches, group, rng, *, fresh: bool):
    """Apply ``operation`` to each batch at a random moment (drawn from the
    seeded ``rng``) while claimers take its jobs; count the batch's claims
    that commit after the operation made the batch unclaimable.

    ``operation`` returns the batch's claimed count at that moment, or None
    for "when it returned". ``fresh``: wait for a claim made after this call
    (a resumed batch), not just any claim of the batch (claimers reach the
    next batch in priority order while the previous one is being cancelled)."""
    late = []
    taken_before = 0
    for batch in batches:
        wait_for_claims(batch, claimed_count(batch) if fresh else 0)
        time.sleep(rng.uniform(0, 0.01))
        at_change = operation(batch)
        # Everything committed before the operation returned is visible here.
        after = claimed_count(batch) if at_change is None else at_change
        taken_before += after
        # A claim that raced the operation has committed once every claimer
        # has finished the claim it was in.
        group.wait_for_claims_in_flight()
        late.append(claimed_count(batch) - after)
    return late, taken_before


@pytest.mark.usefixtures("database_route")
def test_batch_pause__no_claim_commits_after_pause_returned(system_actor, rng):
    account = AccountFactory()
    target = BatchFactory(account=account, priority=10)
    make_jobs(target, 10000, 10)
    for prefix in (2, 3):
        make_jobs(BatchFactory(account=account, priority=0), 3000, prefix)

    late: list[int] = []
    with claimers(limit=5) as group:
        for i in range(60):
            # Keep a backlog, so every pause lands among claims of the batch.
            pending = Job.objects.filter(batch=target, status=JobStatus.PENDING)
            if pending.count() < 3000:
                make_jobs(target, 10000, 11 + i)
            batch_resume(batch=target, actor=system_actor)
            late += assert_no_claim_after(
                lambda b: batch_pause(batch=b, actor=system_actor) and None,
                [target],
                group,
                rng,
                fresh=True,
            )[0]

    assert late == [0] * 60


@pytest.mark.parametrize("operation", ["cancel", "delete"])
def test_batch_cancel_and_delete__no_claim_commits_once_the_batch_is_closed(
    operation, system_actor, rng, monkeypatch
):
    """Cancel and delete close the batch in a short transaction of their own,
    then sweep its jobs. Claims are counted when the sweep starts: by the time
    the call returns the sweep has cancelled every job, and no claim could
    take one whatever the claim does, so only the batch row's FOR SHARE lock
    is tested between the two."""
    account = AccountFactory()
    # Claimers take what is left of this one between two targets.
    make_jobs(BatchFactory(account=account, priority=0), 5000, 999)

    at_sweep: list[int] = []
    sweep = batch_services.batch_cancel_jobs

    def counting_sweep(*, batch: Batch, **kwargs):
        at_sweep.append(claimed_count(batch))
        return sweep(batch=batch, **kwargs)

    monkeypatch.setattr(batch_services, "batch_cancel_jobs", counting_sweep)

    def apply(batch: Batch) -> int:
        at_sweep.clear()
        if operation == "cancel":
            batch_cancel(batch=batch, actor=system_actor)
        else:
            batch_delete(batch=batch, actor=system_actor)
        [closed] = at_sweep
        return closed

    targets: list[Batch] = []
    late: list[int] = []
    taken = 0
    with claimers(limit=5) as group:
        for i in range(40):
            # Each target comes first in priority order, with a backlog, so
            # the claimers are taking its jobs when it is closed.
            target = BatchFactory(account=account, priority=100 + i)
            make_jobs(target, 2000, 100 + i)
            targets.append(target)
            late_here, taken_here = assert_no_claim_after(
                apply, [target], group, rng, fresh=False
            )
            late += late_here
            taken += taken_here

    assert late == [0] * 40
    assert taken >= 40
    leftover = Job.objects.filter(
        batch__in=targets, status__in=[JobStatus.PENDING, JobStatus.IN_PROGRESS]
    )
    assert not leftover.exists()
