"""The per-batch job counts kept by the triggers on jobs_job: they follow
every kind of write, the claim writes none, folding changes nothing a reader
sees, writers of one batch do not wait for each other, and the check finds
and repairs a drift made by hand."""

from __future__ import annotations

import threading

import pytest
from django.core.management import call_command
from django.db import connection, connections, transaction

from batches.job_counts import fold_job_counts, job_count_drift, kept_counts
from batches.models import BatchJobCount
from batches.selectors import batch_status_counts
from batches.services import batch_cancel
from batches.tasks import verify_job_counts
from batches.tests.factories import BatchFactory
from callcenter.actor import Actor
from jobs.claim import claim_jobs
from jobs.models import Job, JobStatus
from jobs.tests.factories import JobFactory

pytestmark = pytest.mark.django_db


def counted(batch_pk: int) -> dict[str, int]:
    """COUNT(*) by status, the truth the kept counts must equal."""
    rows = Job.objects.filter(batch_id=batch_pk).values_list("status", flat=True)
    result: dict[str, int] = {}
    for status in rows:
        result[status] = result.get(status, 0) + 1
    return result


def kept(batch_pk: int) -> dict[str, int]:
    return {s: n for s, n in kept_counts([batch_pk])[batch_pk].items() if n}


def unfolded() -> int:
    """Count changes appended by the triggers and not folded yet."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM batches_batchjobcountdelta")
        return cursor.fetchone()[0]


def behind_the_triggers(sql: str, params: list) -> None:
    """Write jobs_job with its triggers off, as a restore of one table or a
    bulk fix made in psql with replication mode on could."""
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        try:
            cursor.execute(sql, params)
        finally:
            cursor.execute("SET session_replication_role = DEFAULT")


def make_jobs(batch, n: int, status: str = JobStatus.PENDING) -> list[Job]:
    return Job.objects.bulk_create(
        Job(
            account_id=batch.account_id,
            batch=batch,
            phone_number=f"+1415{batch.pk % 1000:03d}{i:04d}",
            status=status,
        )
        for i in range(n)
    )


def test_job_counts__follow_inserts_updates_deletes_and_truncate():
    batch, other = BatchFactory(), BatchFactory()
    make_jobs(batch, 7)
    make_jobs(other, 3, status=JobStatus.SUSPENDED)
    JobFactory(batch=None)  # no batch: counted nowhere
    assert kept(batch.pk) == counted(batch.pk) == {"pending": 7}

    # The one-off job is claimed too; RETURNING gives no order, so pick ours.
    # The claim appends no change: pending and in_progress share a bucket,
    # and in_progress is counted live.
    changes = unfolded()
    claimed = [j for j in claim_jobs(worker_id="w1", limit=4) if j.batch_id]
    assert len(claimed) == 3
    assert unfolded() == changes
    assert kept(batch.pk) == counted(batch.pk) == {"pending": 4, "in_progress": 3}
    Job.objects.filter(pk=claimed[0].pk).update(status=JobStatus.DONE)
    Job.objects.filter(pk=claimed[1].pk).delete()
    # An update that changes neither status nor batch writes no count.
    changes = unfolded()
    Job.objects.filter(batch=batch).update(last_error="x")
    assert unfolded() == changes
    # A job moved to another batch leaves one count and joins the other.
    Job.objects.filter(pk=claimed[2].pk).update(batch=other)

    for b in (batch, other):
        assert kept(b.pk) == counted(b.pk)
    assert job_count_drift() == []
    # `done` is folded into `completed` for readers.
    assert batch_status_counts([batch.pk])[batch.pk]["completed"] == 1

    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no pending FK checks
        cursor.execute("TRUNCATE jobs_job CASCADE")
    assert kept_counts([batch.pk, other.pk]) == {batch.pk: {}, other.pk: {}}


def test_job_counts__a_batch_cancel_moves_every_count():
    batch = BatchFactory()
    make_jobs(batch, 12)
    claim_jobs(worker_id="w1", limit=2)
    batch_cancel(batch=batch, actor=Actor.system("tests"), reason="stop")
    assert kept(batch.pk) == counted(batch.pk) == {"cancelled": 12}
    assert job_count_drift() == []


def test_batch_counts__check_finds_a_hand_made_drift_and_repair_fixes_it(capsys):
    batch, clean = BatchFactory(), BatchFactory()
    make_jobs(batch, 5)
    make_jobs(clean, 2)
    # A drift by hand: two jobs fail without the triggers seeing it.
    behind_the_triggers(
        "UPDATE jobs_job SET status = 'failed' WHERE id IN "
        "(SELECT id FROM jobs_job WHERE batch_id = %s LIMIT 2)",
        [batch.pk],
    )
    assert kept(batch.pk) == {"pending": 5}

    with pytest.raises(SystemExit) as exit_info:
        call_command("batch_counts", "--check")
    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    assert batch.batch_id in out
    assert clean.batch_id not in out
    assert "2 count(s) drifted" in out
    assert kept(batch.pk) == {"pending": 5}  # --check changes nothing

    call_command("batch_counts", "--repair")
    assert "Repaired 2 count(s)." in capsys.readouterr().out
    assert kept(batch.pk) == counted(batch.pk) == {"pending": 3, "failed": 2}
    call_command("batch_counts", "--check", "--batch", batch.batch_id)
    assert "no drift" in capsys.readouterr().out


def test_verify_job_counts__the_periodic_task_repairs_and_logs(caplog):
    batch = BatchFactory()
    make_jobs(batch, 4)
    assert fold_job_counts() >= 1
    BatchJobCount.objects.filter(batch_id=batch.pk).update(n=40)
    assert verify_job_counts() == 1
    assert kept(batch.pk) == {"pending": 4}
    drift_logs = [r for r in caplog.records if r.msg.startswith("batch job count")]
    # pending and in_progress are kept together, as "open".
    assert [(r.status, r.kept, r.actual) for r in drift_logs] == [("open", 40, 4)]
    assert verify_job_counts() == 0


def test_job_counts__a_fold_changes_nothing_a_reader_sees():
    batch, other = BatchFactory(), BatchFactory()
    make_jobs(batch, 6)
    make_jobs(other, 2)
    claim_jobs(worker_id="w1", limit=2)
    Job.objects.filter(batch=batch, status=JobStatus.PENDING).update(
        status=JobStatus.CANCELLED
    )
    before = kept_counts([batch.pk, other.pk])
    changes = unfolded()
    assert changes
    assert fold_job_counts() == changes
    assert unfolded() == 0
    assert kept_counts([batch.pk, other.pk]) == before
    # Folded: one row per batch and bucket.
    assert sorted(
        BatchJobCount.objects.filter(batch_id=batch.pk).values_list("status", "n")
    ) == [("cancelled", 4), ("open", 2)]
    assert fold_job_counts() == 0
    assert job_count_drift() == []


@pytest.mark.django_db(transaction=True)
def test_job_counts__the_claims_skip_covers_its_own_statement_only():
    """The claim tells the trigger it changes no count; a write after it in
    the same transaction is still counted."""
    batch = BatchFactory()
    make_jobs(batch, 3)
    with transaction.atomic():
        [job] = claim_jobs(worker_id="w1", limit=1)
        Job.objects.filter(pk=job.pk).update(status=JobStatus.FAILED)
        Job.objects.filter(batch=batch, status=JobStatus.PENDING).update(
            status=JobStatus.CANCELLED
        )
    assert kept(batch.pk) == counted(batch.pk) == {"failed": 1, "cancelled": 2}
    assert job_count_drift([batch.pk]) == []


def test_batch_counts__repair_drops_the_counts_of_a_batch_gone_from_the_table():
    batch = BatchFactory()
    make_jobs(batch, 3)
    behind_the_triggers("DELETE FROM jobs_job WHERE batch_id = %s", [batch.pk])
    batch.delete()
    call_command("batch_counts", "--repair")
    assert not BatchJobCount.objects.filter(batch_id=batch.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_job_counts__writers_of_one_batch_and_status_do_not_wait_for_each_other():
    """While one transaction that finished a job of a batch is still open,
    another finishes a job of the same batch, into the same status, and
    commits: appending a count change never waits for another writer (one
    counter row per batch and status would make it queue until the first
    commits)."""
    batch = BatchFactory()
    make_jobs(batch, 2)
    first, second = Job.objects.filter(batch=batch).order_by("id")
    holding, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def hold_open() -> None:
        try:
            with transaction.atomic():
                Job.objects.filter(pk=first.pk).update(status=JobStatus.FAILED)
                holding.set()
                release.wait(30)
        except BaseException as exc:
            errors.append(exc)
            holding.set()
        finally:
            connections.close_all()

    thread = threading.Thread(target=hold_open)
    thread.start()
    try:
        assert holding.wait(30)
        with transaction.atomic():
            with connection.cursor() as cursor:
                # Queueing on the other transaction's row would end in this
                # error instead of a commit.
                cursor.execute("SET LOCAL lock_timeout = '2s'")
            Job.objects.filter(pk=second.pk).update(status=JobStatus.FAILED)
            # A fold meanwhile neither waits nor takes the open change.
            with connection.cursor() as cursor:
                cursor.execute("SELECT batch_job_counts_fold()")
    finally:
        release.set()
        thread.join(30)
    assert errors == []
    assert kept(batch.pk) == counted(batch.pk) == {"failed": 2}
    assert job_count_drift([batch.pk]) == []


def test_readers__every_reader_shows_the_kept_counts(api_client, account, client):
    """API, stats, dashboard and admin read the kept counts: a drift made by
    hand shows through in every one of them (none counts the jobs)."""
    from django.contrib.auth import get_user_model
    from django.urls import reverse

    from batches.dashboard import dashboard_data

    batch = BatchFactory(account=account)
    make_jobs(batch, 3)
    fold_job_counts()
    BatchJobCount.objects.filter(batch_id=batch.pk).update(n=987)
    base = f"/api/v1/batches/{batch.batch_id}"

    def pending(body: dict) -> int:
        return body["job_counts"]["pending"]

    assert pending(api_client.get(base).json()) == 987
    assert pending(api_client.get("/api/v1/batches").json()["results"][0]) == 987
    stats = api_client.get(f"{base}/stats").json()
    assert (stats["counts"]["pending"], stats["total"]) == (987, 987)
    assert pending(api_client.patch(base, {"is_active": False}).json()["batch"]) == 987
    assert pending(api_client.post(f"{base}/resume").json()["batch"]) == 987
    assert pending(api_client.post(f"{base}/pause").json()["batch"]) == 987
    row = next(b for b in dashboard_data()["batches"] if b["id"] == batch.pk)
    assert row["counts"]["pending"] == row["total"] == 987

    staff = get_user_model().objects.create_superuser("boss", "b@example.com", "pw")
    client.force_login(staff)
    changelist = client.get(reverse("admin:batches_batch_changelist"))
    assert "<small>0 / 987</small>" in changelist.content.decode()
    change = client.get(reverse("admin:batches_batch_change", args=[batch.pk]))
    assert "987" in change.content.decode()
    # Cancel last: it moves the jobs, and the kept counts move with them.
    cancelled = api_client.post(f"{base}/cancel").json()["batch"]["job_counts"]
    assert (cancelled["pending"], cancelled["cancelled"]) == (984, 3)
