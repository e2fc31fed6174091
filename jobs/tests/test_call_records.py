"""Call records: a deleted job's calls stay as history until the retention
command purges them."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db.models import Sum
from django.utils import timezone

from accounts.models import CreditEntry
from batches.tests.factories import BatchFactory
from jobs.dialers.base import CallResult, Outcome
from jobs.dialers.simulated import SimulatedDialer
from jobs.lifecycle import record_call
from jobs.models import CallRecord, Job, JobStatus
from jobs.services import jobs_purge_finished
from jobs.tests.factories import JobFactory
from jobs.worker import CallWorker

# The worker closes stale connections between rounds: real commits.
pytestmark = pytest.mark.django_db(transaction=True)


def dial_all(outcomes):
    dialer = SimulatedDialer(call_seconds=(0.01, 0.03), outcomes=outcomes, seed=5)
    CallWorker(dialer=dialer, listen=False, worker_id="w1", burst=True).run()


def charged(job_pk):
    total = CreditEntry.objects.filter(job_pk=job_pk).aggregate(t=Sum("amount"))["t"]
    return -(total or 0)


def test_batch_delete_with_jobs__keeps_a_record_of_every_dialled_call(
    account, api_client
):
    batch = BatchFactory(account=account)
    called = JobFactory.create_batch(2, batch=batch)
    dial_all({"answered": 1})
    never_called = JobFactory(batch=batch)
    # A call still in progress when the batch goes: dialled, no outcome yet.
    in_call = JobFactory(
        batch=batch,
        status=JobStatus.IN_PROGRESS,
        claimed_by="w2",
        claimed_at=timezone.now(),
        dialed_at=timezone.now(),
        attempts=1,
    )
    dialled = [Job.objects.get(pk=job.pk) for job in [*called, in_call]]

    response = api_client.delete(f"/api/v1/batches/{batch.batch_id}?delete_jobs=true")

    assert response.status_code == 200
    assert response.json()["deleted_jobs"] == 4
    # The original contract: the jobs are gone from the API.
    for job in [*dialled, never_called]:
        assert api_client.get(f"/api/v1/jobs/{job.pk}").status_code == 404
    assert not Job.objects.filter(batch=batch).exists()
    # The history of the calls is not.
    records = {r.job_pk: r for r in CallRecord.objects.all()}
    assert set(records) == {job.pk for job in dialled}
    for job in dialled:
        record = records[job.pk]
        assert record.account_id == account.pk
        assert record.batch_public_id == batch.batch_id
        assert record.phone_number == job.phone_number
        assert record.attempts == job.attempts
        assert record.attempt_log == job.attempt_log
        assert record.cost == charged(job.pk)
        assert record.last_call_at == job.dialed_at
        assert record.deleted_because == "batch deleted with its jobs"
    for job in dialled[:2]:  # the calls the worker made
        record = records[job.pk]
        assert record.last_outcome == "answered"
        assert record.duration_seconds == pytest.approx(
            job.attempt_log[0]["duration_seconds"]
        )
        assert record.cost > 0
    assert records[in_call.pk].status == JobStatus.CANCELLED
    assert records[in_call.pk].last_outcome == ""

    # The call in progress ends after its job is gone: its record gets it,
    # once however often the worker retries recording it.
    for _ in range(2):
        status = record_call(
            job_id=in_call.pk,
            worker_id="w2",
            dialed_at=dialled[2].dialed_at,
            call_id="call-9",
            result=CallResult(outcome=Outcome.ANSWERED, duration_seconds=42.0),
        )
        assert status == "gone"
    record = CallRecord.objects.get(job_pk=in_call.pk)
    assert record.last_outcome == "answered"
    assert record.duration_seconds == 42.0
    [entry] = record.attempt_log
    assert entry["attempt"] == 1
    assert entry["call_id"] == "call-9"


def test_jobs_purge_finished__keeps_the_call_records(account):
    batch = BatchFactory(account=account)
    JobFactory(batch=batch)
    dial_all({"answered": 1})
    job = Job.objects.get()
    with time_machine.travel(timezone.now() + timedelta(days=40)):
        assert jobs_purge_finished(older_than_days=30) == 1

    assert not Job.objects.exists()
    record = CallRecord.objects.get()
    assert record.job_pk == job.pk
    assert record.attempt_log == job.attempt_log
    assert record.deleted_because == "finished-job retention"


def records_dialled_days_ago(account, *days):
    batch = BatchFactory(account=account)
    now = timezone.now()
    for n, age in enumerate(days):
        JobFactory(
            batch=batch,
            status=JobStatus.COMPLETED,
            attempts=1,
            dialed_at=now - timedelta(days=age),
            finished_at=now - timedelta(days=age),
            phone_number=f"+1415555{n:04d}",
        )
    from batches.services import batch_delete
    from callcenter.actor import Actor

    batch_delete(batch=batch, actor=Actor.system("tests"), delete_jobs=True)
    return {r.last_call_at.date(): r for r in CallRecord.objects.all()}


def test_purge_call_records__deletes_only_records_past_the_retention(account, settings):
    settings.CALL_RECORD_RETENTION_DAYS = 1825
    records_dialled_days_ago(account, 1826, 1824, 10)
    out = io.StringIO()

    call_command("purge_call_records", "--dry-run", stdout=out)
    assert "1 call record(s) older than 1825 days would be deleted" in out.getvalue()
    assert CallRecord.objects.count() == 3

    call_command("purge_call_records", "--yes", stdout=out)
    assert "Deleted 1 call record(s)" in out.getvalue()
    ages = sorted(
        (timezone.now() - r.last_call_at).days for r in CallRecord.objects.all()
    )
    assert ages == [10, 1824]

    # Shorter retention, by the setting only: now the 1824-day one is old.
    settings.CALL_RECORD_RETENTION_DAYS = 365
    call_command("purge_call_records", "--yes", stdout=out)
    assert [
        (timezone.now() - r.last_call_at).days for r in CallRecord.objects.all()
    ] == [10]


def test_purge_call_records__asks_first_and_refuses_without_a_terminal(
    account, monkeypatch
):
    records_dialled_days_ago(account, 4000)
    monkeypatch.setattr(
        "jobs.management.commands.purge_call_records.Command.stdin_isatty",
        lambda self: False,
    )
    with pytest.raises(CommandError, match="pass --yes"):
        call_command("purge_call_records", stdout=io.StringIO())
    assert CallRecord.objects.count() == 1
