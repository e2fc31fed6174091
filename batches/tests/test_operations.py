"""Background sweeps: cancel and delete above SWEEP_INLINE_MAX_JOBS answer
202 with an operation, the sweep runs in chunks with its progress saved, an
interrupted one resumes by itself, and small batches stay inline (200)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.db.models.functions import Now
from django.test import override_settings

from accounts.tests.factories import MembershipFactory
from batches import operations
from batches.models import Batch, BatchEvent, Operation
from batches.tests.factories import BatchFactory
from callcenter.actor import Actor
from jobs.claim import claim_jobs
from jobs.models import CallRecord, Job, JobStatus
from jobs.tests.factories import JobFactory

ACTOR = Actor.system("tests")


@pytest.fixture
def queued(monkeypatch):
    """Operations queued for the qcluster, kept here instead of run inline
    (the tests' Q_SYNC would run them before the request answers)."""
    pks: list[int] = []
    monkeypatch.setattr(operations, "enqueue", pks.append)
    return pks


def api(account):
    from django.test import Client

    from accounts.tokens import api_token_create

    user = MembershipFactory(account=account).user
    key = api_token_create(user=user)
    return Client(HTTP_AUTHORIZATION=f"Token {key}")


def statuses(batch) -> dict[str, int]:
    rows = Job.objects.filter(batch_id=batch.pk).values_list("status", flat=True)
    out: dict[str, int] = {}
    for status in rows:
        out[status] = out.get(status, 0) + 1
    return out


@pytest.mark.django_db(transaction=True)
@override_settings(SWEEP_INLINE_MAX_JOBS=6, JOB_SWEEP_CHUNK_SIZE=2)
def test_cancel_api__up_to_the_threshold_the_sweep_stays_inline(account, queued):
    batch = BatchFactory(account=account)
    JobFactory.create_batch(6, batch=batch)
    response = api(account).post(
        f"/api/v1/batches/{batch.batch_id}/cancel", content_type="application/json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["cancelled_jobs"] == 6
    assert "operation" not in response.json()
    assert queued == []
    assert not Operation.objects.exists()
    assert statuses(batch) == {"cancelled": 6}


@pytest.mark.django_db(transaction=True)
@override_settings(SWEEP_INLINE_MAX_JOBS=5, JOB_SWEEP_CHUNK_SIZE=2)
def test_cancel_api__above_the_threshold_202_then_the_background_sweep(
    account, queued
):
    batch = BatchFactory(account=account)
    JobFactory.create_batch(7, batch=batch)
    JobFactory(batch=batch, status=JobStatus.COMPLETED)  # stays as history
    client = api(account)

    response = client.post(
        f"/api/v1/batches/{batch.batch_id}/cancel",
        {"reason": "Campaign over"},
        content_type="application/json",
    )

    assert response.status_code == 202, response.json()
    body = response.json()
    operation = Operation.objects.get()
    assert body["operation"]["operation_id"] == str(operation.operation_id)
    assert response["Location"] == f"/api/v1/operations/{operation.operation_id}"
    assert body["operation"]["state"] == "pending"
    assert body["operation"]["total"] == 7
    assert body["changed"] is True
    assert body["batch"]["state"] == "cancelled"
    assert queued == [operation.pk]
    # The batch flipped at once: nothing of it can be claimed any more, and
    # the jobs wait for the background sweep.
    assert claim_jobs(worker_id="w", limit=10) == []
    assert statuses(batch) == {"pending": 7, "completed": 1}
    assert operation.source == "api"
    assert operation.actor is not None

    seen: list[tuple[int, int]] = []
    state = operations.operation_run(
        operation.pk,
        after_chunk=lambda op: seen.append((op.done, op.total)),
    )

    assert state == "succeeded"
    assert seen == [(2, 7), (4, 7), (6, 7), (7, 7)]  # saved after each chunk
    assert statuses(batch) == {"cancelled": 7, "completed": 1}
    got = client.get(f"/api/v1/operations/{operation.operation_id}").json()
    assert got["state"] == "succeeded"
    assert (got["done"], got["total"], got["percent"]) == (7, 7, 100)
    assert got["cancelled_jobs"] == 7
    assert got["batch_id"] == batch.batch_id
    event = BatchEvent.objects.get(batch=batch, action="jobs_cancelled")
    assert event.changes == {
        "jobs_cancelled": 7,
        "operation": str(operation.operation_id),
    }
    assert event.source == "api"
    assert event.reason == "Campaign over"
    assert Job.objects.filter(cancel_reason="Campaign over").count() == 7
    # Another account does not see it.
    other = api(BatchFactory().account)
    assert other.get(f"/api/v1/operations/{operation.operation_id}").status_code == 404
    assert other.get("/api/v1/operations/not-a-uuid").status_code == 404
    listed = client.get("/api/v1/operations").json()
    assert [o["operation_id"] for o in listed["results"]] == [
        str(operation.operation_id)
    ]


@pytest.mark.django_db(transaction=True)
@override_settings(SWEEP_INLINE_MAX_JOBS=3, JOB_SWEEP_CHUNK_SIZE=2)
def test_delete_api__with_its_jobs_in_the_background_keeps_the_call_records(
    account,
):
    # Q_SYNC: the queued task runs right after the commit, as a qcluster would.
    batch = BatchFactory(account=account)
    JobFactory.create_batch(4, batch=batch)
    JobFactory(batch=batch, status=JobStatus.COMPLETED, attempts=1, attempt_log=[{}])
    response = api(account).delete(
        f"/api/v1/batches/{batch.batch_id}?delete_jobs=true"
    )
    assert response.status_code == 202, response.json()
    assert response.json()["deleted"] is True
    operation = Operation.objects.get()
    assert operation.kind == "delete_jobs"
    assert operation.total == 4 + 5  # cancel 4, then remove all 5
    assert operation.state == "succeeded"
    assert (operation.cancelled_jobs, operation.deleted_jobs) == (4, 5)
    assert not Job.objects.filter(batch_id=batch.pk).exists()
    assert Batch.all_objects.get(pk=batch.pk).deleted_at is not None
    assert CallRecord.objects.filter(batch_public_id=batch.batch_id).exists()


@pytest.mark.django_db(transaction=True)
@override_settings(SWEEP_INLINE_MAX_JOBS=3)
def test_delete_api__small_batch_answers_200_as_before(account, queued):
    batch = BatchFactory(account=account)
    JobFactory.create_batch(3, batch=batch)
    response = api(account).delete(f"/api/v1/batches/{batch.batch_id}")
    assert response.status_code == 200
    assert response.json() == {
        "batch_id": batch.batch_id,
        "deleted": True,
        "cancelled_jobs": 3,
        "deleted_jobs": 0,
        "message": "Batch deleted.",
    }
    assert queued == []


@pytest.mark.django_db(transaction=True)
@override_settings(SWEEP_INLINE_MAX_JOBS=1, JOB_SWEEP_CHUNK_SIZE=2)
def test_operation__a_second_cancel_returns_the_unfinished_operation(
    account, queued
):
    batch = BatchFactory(account=account)
    JobFactory.create_batch(4, batch=batch)
    first = operations.batch_cancel_request(batch=batch, actor=ACTOR).operation
    again = operations.batch_cancel_request(batch=batch, actor=ACTOR).operation
    assert first is not None
    assert again is not None
    assert first.pk == again.pk
    assert Operation.objects.count() == 1


@pytest.mark.django_db(transaction=True)
@override_settings(SWEEP_INLINE_MAX_JOBS=1, JOB_SWEEP_CHUNK_SIZE=2)
def test_operation__a_run_stops_at_its_time_budget_and_queues_its_continuation(
    account, queued
):
    batch = BatchFactory(account=account)
    JobFactory.create_batch(5, batch=batch)
    operation = operations.batch_cancel_request(batch=batch, actor=ACTOR).operation
    assert operation is not None
    queued.clear()

    assert operations.operation_run(operation.pk, budget_seconds=0) == "running"
    assert queued == [operation.pk]  # its continuation
    assert statuses(batch) == {"pending": 5}
    assert operations.operation_run(operation.pk) == "succeeded"
    operation.refresh_from_db()
    assert operation.attempts == 2
    assert statuses(batch) == {"cancelled": 5}


@pytest.mark.django_db(transaction=True)
@override_settings(SWEEP_INLINE_MAX_JOBS=1, JOB_SWEEP_CHUNK_SIZE=2)
def test_operation__two_runs_never_sweep_at_once(account, queued):
    batch = BatchFactory(account=account)
    JobFactory.create_batch(4, batch=batch)
    operation = operations.batch_cancel_request(batch=batch, actor=ACTOR).operation
    assert operation is not None
    inner: list[str | None] = []

    def second_run(op: Operation) -> None:
        if not inner:  # while the first run holds the lease
            inner.append(operations.operation_run(op.pk))

    assert operations.operation_run(operation.pk, after_chunk=second_run) == (
        "succeeded"
    )
    assert inner == [None]
    # A finished operation is not run again either.
    assert operations.operation_run(operation.pk) is None


RUN_AND_HANG = """
import sys, time
import django
django.setup()
from batches import operations
def hang(op):
    if op.done >= 4:
        print("chunks", op.done, flush=True)
        time.sleep(600)
operations.operation_run(int(sys.argv[1]), after_chunk=hang)
"""


@pytest.mark.slow
@pytest.mark.postgres_only  # the killed run is a subprocess on the same server
@pytest.mark.django_db(transaction=True)
@override_settings(SWEEP_INLINE_MAX_JOBS=1)
def test_operation__killed_mid_sweep_resumes_by_itself(account, queued):
    batch = BatchFactory(account=account)
    JobFactory.create_batch(10, batch=batch)
    operation = operations.batch_cancel_request(batch=batch, actor=ACTOR).operation
    assert operation is not None
    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    proc = subprocess.Popen(
        [sys.executable, "-c", RUN_AND_HANG, str(operation.pk)],
        cwd=settings.BASE_DIR,
        env={
            **os.environ,
            "DATABASE_URL": url,
            "DJANGO_SETTINGS_MODULE": "callcenter.settings_test",
            "JOB_SWEEP_CHUNK_SIZE": "2",
            "SWEEP_INLINE_MAX_JOBS": "1",
        },
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("chunks 4")
        proc.send_signal(signal.SIGKILL)  # a kill -9 mid-sweep
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    operation.refresh_from_db()
    assert operation.state == "running"
    assert operation.done == 4
    assert statuses(batch) == {"cancelled": 4, "pending": 6}

    # While the killed run's lease lasts, nothing takes the operation over.
    assert operations.operations_resume() == 0
    # The lease runs out (as LEASE seconds later): the resume schedule
    # queues it, and the run carries on where the killed one stopped.
    Operation.objects.filter(pk=operation.pk).update(
        lease_expires_at=operation.lease_expires_at - operations.LEASE
    )
    assert operations.operations_resume() == 1
    assert queued[-1] == operation.pk
    assert operations.operation_run(operation.pk) == "succeeded"
    operation.refresh_from_db()
    assert (operation.done, operation.total, operation.cancelled_jobs) == (10, 10, 10)
    assert operation.attempts == 2
    assert statuses(batch) == {"cancelled": 10}
    assert operations.operations_resume() == 0


@pytest.mark.django_db(transaction=True)
def test_operations_resume__queues_a_pending_operation_whose_task_was_lost(
    account, queued
):
    batch = BatchFactory(account=account, is_active=False)
    JobFactory.create_batch(2, batch=batch)
    operation = operations.inactive_sweep_start(
        batch=batch, actor=ACTOR, reason="old"
    )
    assert queued == [operation.pk]
    # The resume compares created_at with the database's clock: the test
    # takes its times from that clock, whatever the session's is.
    Operation.objects.filter(pk=operation.pk).update(created_at=Now())
    assert operations.operations_resume() == 0  # just queued: left alone
    Operation.objects.filter(pk=operation.pk).update(
        created_at=Now() - 2 * operations.LEASE
    )
    assert operations.operations_resume() == 1


@pytest.mark.django_db(transaction=True)
@override_settings(JOB_SWEEP_CHUNK_SIZE=2)
def test_cancel_inactive_batch_jobs__async_runs_in_the_background(account):
    from batches.services import batch_pause

    batch = BatchFactory(account=account)
    JobFactory.create_batch(5, batch=batch)
    JobFactory(batch=batch, status=JobStatus.SUSPENDED)  # a paused batch keeps it
    batch_pause(batch=batch, actor=ACTOR)
    from io import StringIO

    out = StringIO()
    call_command("cancel_inactive_batch_jobs", "--async", "--yes", stdout=out)

    operation = Operation.objects.get()
    assert str(operation.operation_id) in out.getvalue()
    assert operation.kind == "inactive_sweep"
    assert operation.source == "command"
    # Q_SYNC ran the queued task after the commit, as the qcluster would.
    assert operation.state == "succeeded"
    assert operation.cancelled_jobs == 5
    assert statuses(batch) == {"cancelled": 5, "suspended": 1}
    event = BatchEvent.objects.get(batch=batch, action="jobs_cancelled")
    assert event.changes["statuses"] == ["pending", "scheduled"]
    assert event.source == "command"


@pytest.mark.django_db(transaction=True)
@override_settings(JOB_SWEEP_CHUNK_SIZE=2)
def test_inactive_sweep__stops_when_the_batch_is_resumed(account, queued):
    from batches.services import batch_pause, batch_resume

    batch = BatchFactory(account=account)
    JobFactory.create_batch(6, batch=batch)
    batch_pause(batch=batch, actor=ACTOR)
    operation = operations.inactive_sweep_start(batch=batch, actor=ACTOR, reason="x")

    def resume_after_first_chunk(op: Operation) -> None:
        if op.done == 2:
            batch_resume(batch=Batch.objects.get(pk=batch.pk), actor=ACTOR)

    state = operations.operation_run(
        operation.pk, after_chunk=resume_after_first_chunk
    )
    assert state == "succeeded"
    assert statuses(batch) == {"cancelled": 2, "pending": 4}
    operation.refresh_from_db()
    assert (operation.done, operation.cancelled_jobs) == (2, 2)


@pytest.mark.django_db(transaction=True)
@override_settings(SWEEP_INLINE_MAX_JOBS=1, JOB_SWEEP_CHUNK_SIZE=2)
def test_admin_cancel__big_batch_redirects_to_the_operation_page(
    account, admin_client, queued
):
    batch = BatchFactory(account=account)
    JobFactory.create_batch(3, batch=batch)
    response = admin_client.post(
        f"/admin/batches/batch/{batch.pk}/cancel/", {"post": "yes"}
    )
    operation = Operation.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/admin/batches/operation/{operation.pk}/change/"
    assert operation.source == "admin"
    page = admin_client.get(response["Location"])
    assert b'id="cc-operation-bar"' in page.content
    progress = admin_client.get(
        f"/admin/batches/operation/{operation.pk}/progress.json"
    ).json()
    assert progress["state"] == "pending"
    assert progress["total"] == 3
    operations.operation_run(operation.pk)
    progress = admin_client.get(
        f"/admin/batches/operation/{operation.pk}/progress.json"
    ).json()
    assert (progress["state"], progress["percent"], progress["finished"]) == (
        "succeeded",
        100,
        True,
    )
