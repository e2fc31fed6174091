from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction
from django.utils import timezone

from batches import services
from batches.models import Batch, BatchEvent
from batches.tests.factories import BatchFactory
from callcenter.actor import Actor, Source
from jobs.models import Job, JobStatus
from jobs.signals import send_jobs_finished_on_commit
from jobs.tests.factories import JobFactory


def finish(job: Job, status: str = JobStatus.COMPLETED) -> None:
    """What a worker does when a call ends: a conditional update, then
    jobs_finished once the transaction has committed."""
    with transaction.atomic():
        Job.objects.filter(pk=job.pk, status=JobStatus.IN_PROGRESS).update(
            status=status, finished_at=timezone.now()
        )
        job.status = status
        send_jobs_finished_on_commit([(job, "answered")])


def completed_events(batch):
    return BatchEvent.objects.filter(batch=batch, action=BatchEvent.Action.COMPLETED)


@pytest.mark.django_db
def test_batch_complete_if_done__completes_when_every_job_is_terminal():
    batch = BatchFactory()
    JobFactory(batch=batch, status=JobStatus.COMPLETED)
    JobFactory(batch=batch, status=JobStatus.DONE)
    JobFactory(batch=batch, status=JobStatus.FAILED)
    JobFactory(batch=batch, status=JobStatus.CANCELLED)

    assert services.batch_complete_if_done(batch_id=batch.pk) is True

    batch.refresh_from_db()
    assert batch.completed_at is not None
    assert batch.state == Batch.State.COMPLETED
    event = completed_events(batch).get()
    assert event.source == Source.SYSTEM
    assert services.batch_complete_if_done(batch_id=batch.pk) is False
    assert completed_events(batch).count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    "open_status",
    [
        JobStatus.PENDING,
        JobStatus.SCHEDULED,
        JobStatus.IN_PROGRESS,
        JobStatus.SUSPENDED,
    ],
)
def test_batch_complete_if_done__not_while_a_job_is_open(open_status):
    batch = BatchFactory()
    JobFactory(batch=batch, status=JobStatus.COMPLETED)
    JobFactory(batch=batch, status=open_status, scheduled_at=timezone.now())
    assert services.batch_complete_if_done(batch_id=batch.pk) is False
    batch.refresh_from_db()
    assert batch.completed_at is None


@pytest.mark.django_db
def test_batch_complete_if_done__not_for_empty_paused_or_deleted_batches(
    system_actor,
):
    empty = BatchFactory()
    assert services.batch_complete_if_done(batch_id=empty.pk) is False

    paused = BatchFactory()
    JobFactory(batch=paused, status=JobStatus.COMPLETED)
    services.batch_pause(batch=paused, actor=system_actor)
    assert services.batch_complete_if_done(batch_id=paused.pk) is False

    deleted = BatchFactory()
    JobFactory(batch=deleted, status=JobStatus.COMPLETED)
    services.batch_delete(batch=deleted, actor=system_actor)
    assert services.batch_complete_if_done(batch_id=deleted.pk) is False


@pytest.mark.django_db(transaction=True)
def test_jobs_finished__completes_the_batch_after_the_last_job_commits():
    batch = BatchFactory()
    first, last = (
        JobFactory(batch=batch, status=JobStatus.IN_PROGRESS, claimed_by="w1")
        for _ in range(2)
    )
    finish(first)
    assert not completed_events(batch).exists()
    finish(last)
    event = completed_events(batch).get()
    assert event.source == Source.WORKER
    assert event.actor_label == "w1"


def _run_threads(n: int, target) -> list[BaseException]:
    errors: list[BaseException] = []

    def wrapped(i: int) -> None:
        try:
            target(i)
        except BaseException as exc:  # reported to the test thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=wrapped, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return errors


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("round_", range(5))
def test_batch_complete_if_done__exactly_once_when_workers_finish_together(round_):
    workers = 8
    batch = BatchFactory()
    jobs = [
        JobFactory(batch=batch, status=JobStatus.IN_PROGRESS, claimed_by=f"w{i}")
        for i in range(workers)
    ]
    at_commit = threading.Barrier(workers)

    def worker(i: int) -> None:
        job = jobs[i]
        with transaction.atomic():
            Job.objects.filter(pk=job.pk).update(status=JobStatus.COMPLETED)
            send_jobs_finished_on_commit([(job, "answered")])
            # Every worker commits its last job at the same moment.
            at_commit.wait(timeout=30)

    assert _run_threads(workers, worker) == []

    assert completed_events(batch).count() == 1
    batch.refresh_from_db()
    assert batch.completed_at is not None


@pytest.mark.django_db(transaction=True)
def test_batch_complete_if_done__one_winner_among_simultaneous_checks():
    checkers = 10
    batch = BatchFactory()
    JobFactory.create_batch(3, batch=batch, status=JobStatus.COMPLETED)
    start = threading.Barrier(checkers)
    results: list[bool] = []

    def check(i: int) -> None:
        start.wait(timeout=30)
        results.append(
            services.batch_complete_if_done(
                batch_id=batch.pk, actor=Actor.worker(f"w{i}")
            )
        )

    assert _run_threads(checkers, check) == []
    assert sorted(results) == [False] * (checkers - 1) + [True]
    assert completed_events(batch).count() == 1


@pytest.mark.django_db
def test_batches_reconcile_completions__catches_missed_completions():
    done = BatchFactory()
    JobFactory(batch=done, status=JobStatus.COMPLETED)
    busy = BatchFactory()
    JobFactory(batch=busy, status=JobStatus.PENDING)

    assert services.batches_reconcile_completions() == 1
    assert services.batches_reconcile_completions() == 0

    done.refresh_from_db()
    busy.refresh_from_db()
    assert done.completed_at is not None
    assert busy.completed_at is None
    assert completed_events(done).get().actor_label == "reconciliation"


@pytest.mark.django_db(transaction=True)
def test_batch_resume__a_batch_with_nothing_left_completes_at_once(system_actor):
    batch = BatchFactory()
    JobFactory(batch=batch, status=JobStatus.PENDING)
    services.batch_pause(batch=batch, actor=system_actor)
    services.batch_cancel_inactive_jobs(batch=batch, actor=Actor.command("t"))
    batch.refresh_from_db()
    assert batch.completed_at is None

    services.batch_resume(batch=batch, actor=system_actor)

    batch.refresh_from_db()
    assert batch.state == Batch.State.COMPLETED
    assert completed_events(batch).count() == 1


@pytest.mark.django_db(transaction=True)
def test_batch_complete_if_done__not_done_is_one_read_and_no_transaction():
    """Every finished job asks this; the common answer costs one read."""
    from django.test.utils import CaptureQueriesContext

    batch = BatchFactory()
    JobFactory(batch=batch, status=JobStatus.COMPLETED)
    JobFactory(batch=batch, status=JobStatus.PENDING)
    with CaptureQueriesContext(connection) as queries:
        assert services.batch_complete_if_done(batch_id=batch.pk) is False
    (only,) = [q["sql"] for q in queries.captured_queries]
    assert only.startswith("SELECT EXISTS")
