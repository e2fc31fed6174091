from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_q.models import Schedule

from callcenter.schedules import PREFIX, ensure_schedules
from jobs import maintenance
from jobs.models import Job, JobStatus
from jobs.tests.factories import JobFactory
from jobs.worker import database_now

pytestmark = pytest.mark.django_db


def ours():
    return dict(
        Schedule.objects.filter(name__startswith=PREFIX).values_list("name", "func")
    )


def test_ensure_schedules__migrate_defines_maintenance_idempotently(settings):
    settings.JOB_RETENTION_DAYS = 0
    Schedule.objects.create(name="made by hand", func="math.floor", args="1")
    ensure_schedules()
    ensure_schedules()
    assert ours() == {
        "callcenter: deliver due webhooks": "webhooks.tasks.deliver_due",
        "callcenter: recover expired leases": "jobs.maintenance.recover_leases",
        "callcenter: reconcile batch completions": (
            "batches.tasks.reconcile_completions"
        ),
        "callcenter: reconcile credits": "accounts.tasks.reconcile_credits",
        "callcenter: resume interrupted operations": (
            "batches.tasks.resume_operations"
        ),
        "callcenter: purge expired idempotency keys": (
            "accounts.tasks.purge_idempotency_keys"
        ),
        "callcenter: verify batch job counts": "batches.tasks.verify_job_counts",
    }
    assert Schedule.objects.filter(name="made by hand").exists()
    assert set(Schedule.objects.values_list("schedule_type", flat=True)) >= {"I"}


def test_ensure_schedules__retention_schedule_follows_the_setting(settings):
    settings.JOB_RETENTION_DAYS = 30
    ensure_schedules()
    assert "callcenter: purge old finished jobs" in ours()
    settings.JOB_RETENTION_DAYS = 0
    ensure_schedules()
    assert "callcenter: purge old finished jobs" not in ours()


def test_ensure_schedules__count_check_follows_the_setting(settings):
    settings.JOB_COUNTS_CHECK_MINUTES = 15
    ensure_schedules()
    assert Schedule.objects.get(
        name="callcenter: verify batch job counts"
    ).minutes == 15
    settings.JOB_COUNTS_CHECK_MINUTES = 0
    ensure_schedules()
    assert "callcenter: verify batch job counts" not in ours()


def test_migrate__runs_ensure_schedules():
    Schedule.objects.filter(name__startswith=PREFIX).delete()
    call_command("migrate", verbosity=0)
    assert len(ours()) == 7


def test_purge_finished__off_by_default_and_deletes_only_old_terminal_jobs(settings):
    old = timezone.now() - timedelta(days=40)
    stale = JobFactory(status=JobStatus.COMPLETED, finished_at=old)
    failed = JobFactory(status=JobStatus.FAILED, finished_at=old)
    recent = JobFactory(status=JobStatus.COMPLETED, finished_at=timezone.now())
    waiting = JobFactory(status=JobStatus.PENDING)

    settings.JOB_RETENTION_DAYS = 0
    assert maintenance.purge_finished() == 0
    settings.JOB_RETENTION_DAYS = 30
    assert maintenance.purge_finished() == 2

    remaining = set(Job.objects.values_list("pk", flat=True))
    assert remaining == {recent.pk, waiting.pk}
    assert stale.pk not in remaining
    assert failed.pk not in remaining


def test_recover_leases__resolves_expired_leases_when_no_worker_runs():
    # Expired on the database's clock, which recovery compares with.
    expired = database_now() - timedelta(minutes=5)
    undialled = JobFactory(
        status=JobStatus.IN_PROGRESS, claimed_by="gone", lease_expires_at=expired
    )
    dialled = JobFactory(
        status=JobStatus.IN_PROGRESS,
        claimed_by="gone",
        lease_expires_at=expired,
        dialed_at=expired,
        attempts=1,
    )

    assert maintenance.recover_leases() == 2

    undialled.refresh_from_db()
    dialled.refresh_from_db()
    assert undialled.status == JobStatus.PENDING
    assert dialled.status == JobStatus.FAILED
    assert dialled.last_error == "worker lost"
