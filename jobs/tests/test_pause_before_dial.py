"""A pause is exact up to the provider request: the dial mark, the last
commit before the dialer is asked to call, re-checks the batch under the
same FOR SHARE lock as the claim. A job claimed just before a pause is
released, not dialled, when its mark commits after the pause."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections, transaction

from batches.services import batch_cancel_flip, batch_pause, batch_resume
from batches.tests.factories import BatchFactory
from callcenter.actor import Actor
from jobs import lifecycle
from jobs.claim import claim_jobs
from jobs.models import CallAttempt, Job, JobStatus
from jobs.tests.factories import JobFactory
from jobs.tests.test_twilio import charged, dialer, fake, twilio  # noqa: F401
from jobs.worker import CallWorker

pytestmark = pytest.mark.django_db(transaction=True)

ACTOR = Actor.system("tests")


def test_job_claimed_then_batch_paused__the_dial_mark_releases_it_and_no_create_reaches_twilio(  # noqa: E501
    twilio,  # noqa: F811
    account,
):
    batch = BatchFactory(account=account)
    job = JobFactory(batch=batch)
    worker = CallWorker(dialer=dialer(), worker_id="w1", listen=False)
    claimed = claim_jobs(worker_id=worker.worker_id, token=worker.token, limit=1)
    assert [j.pk for j in claimed] == [job.pk]

    batch_pause(batch=batch, actor=ACTOR)
    worker.dial(claimed)
    worker.placer.shutdown(wait=True)

    assert twilio.creates == []
    assert not worker.calls
    job.refresh_from_db()
    assert job.status == JobStatus.PENDING
    assert (job.claimed_by, job.claim_token, job.attempts) == ("", "", 0)
    assert job.dialed_at is None
    assert not CallAttempt.objects.filter(job=job).exists()
    assert charged(job) == 0  # the reservation was refunded

    # Resumed, it is dialled once, as any pending job.
    batch_resume(batch=batch, actor=ACTOR)
    again = CallWorker(dialer=dialer(), worker_id="w2", listen=False)
    again.claim()
    again.placer.shutdown(wait=True)
    assert [p["To"][0] for p in twilio.creates] == [job.phone_number]


def test_job_claimed_then_batch_cancelled__released_for_the_sweep_not_dialled(
    twilio,  # noqa: F811
    account,
):
    batch = BatchFactory(account=account)
    job = JobFactory(batch=batch)
    worker = CallWorker(dialer=dialer(), worker_id="w1", listen=False)
    claimed = claim_jobs(worker_id=worker.worker_id, token=worker.token, limit=1)

    batch_cancel_flip(batch=batch, actor=ACTOR, reason="stop")
    worker.dial(claimed)
    worker.placer.shutdown(wait=True)

    assert twilio.creates == []
    job.refresh_from_db()
    assert job.status == JobStatus.PENDING  # the cancel sweep takes it from here


def _waiting_on_lock(pid: int) -> bool:
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid]
        )
        row = cursor.fetchone()
    return row is not None and row[0] == "Lock"


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="row locks are PostgreSQL's"
)
def test_dial_mark_racing_a_pause_under_way__waits_for_its_commit_and_releases_the_job(
    account,
):
    """The mark's statement starts while the pause holds the batch row FOR
    UPDATE, uncommitted: the mark waits, re-reads the row once the pause
    commits, and dials nothing. (Without the lock it reads the batch still
    active and dials after the pause returned.)"""
    batch = BatchFactory(account=account)
    job = JobFactory(batch=batch)
    claimed = claim_jobs(worker_id="w1", token="t1", limit=1)

    paused = threading.Event()
    release = threading.Event()
    pause_pid: list[int] = []

    def pause() -> None:
        try:
            with transaction.atomic():
                batch_pause(batch=batch, actor=ACTOR)
                pause_pid.append(connection.connection.info.backend_pid)
                paused.set()
                release.wait(30)
        finally:
            connection.close()

    marked: list[list[Job]] = []
    mark_pid: list[int] = []
    mark_started = threading.Event()

    def mark() -> None:
        try:
            mark_pid.append(connection.connection.info.backend_pid)
            mark_started.set()
            marked.append(
                lifecycle.mark_dialed(
                    jobs=claimed, worker_id="w1", token="t1", dialer="twilio"
                )
            )
        finally:
            connection.close()

    pauser = threading.Thread(target=pause)
    pauser.start()
    assert paused.wait(30)
    connections["default"].ensure_connection()
    marker = threading.Thread(target=lambda: (connection.ensure_connection(), mark()))
    marker.start()
    assert mark_started.wait(30)
    # The mark either finished (no lock taken: the mutant) or waits for the
    # pause's row lock.
    for _ in range(600):
        if marked or _waiting_on_lock(mark_pid[0]):
            break
        threading.Event().wait(0.05)
    release.set()
    pauser.join(30)
    marker.join(30)

    assert marked == [[]]
    job.refresh_from_db()
    assert job.status == JobStatus.PENDING
    assert not CallAttempt.objects.filter(job=job).exists()
