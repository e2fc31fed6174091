"""The calling window at the dial gate (jobs/rules/calling_window.py).

The gate decides with the database's clock, which time-machine cannot move:
these tests build windows relative to that clock instead (a window open only
two days from now, in UTC), so what they check does not depend on the hour.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db.models import Sum

from accounts.models import CreditEntry
from batches.tests.factories import BatchFactory
from jobs import billing, lifecycle
from jobs.claim import claim_jobs
from jobs.models import JobEvent, JobStatus
from jobs.rules import calling_window
from jobs.rules.windows import DAYS
from jobs.tests.factories import JobFactory
from jobs.worker import database_now

pytestmark = pytest.mark.django_db(transaction=True)


def claim_and_gate(limit=5):
    jobs = claim_jobs(worker_id="w1", token="t", limit=limit)
    payable = billing.reserve_calls(jobs, worker_id="w1", token="t")
    return lifecycle.mark_dialed(jobs=payable, worker_id="w1", token="t")


def later_day() -> datetime:
    """Midnight UTC two days after the database's today."""
    now = database_now().astimezone(UTC)
    return datetime.combine(now.date() + timedelta(days=2), datetime.min.time(), UTC)


def test_gate__a_job_whose_window_is_closed_waits_for_its_opening(account):
    """Claimed (pending when its window was open, say) but the window is
    closed at the dial: deferred to the next opening, no attempt spent, its
    reservation given back, audited with the zone and the local time."""
    opens = later_day()
    closed = BatchFactory(
        account=account,
        calling_window={
            "start": "00:00",
            "end": "24:00",
            "days": [DAYS[opens.weekday()]],
        },
    )
    open_all_day = BatchFactory(account=account)
    waiting = JobFactory(batch=closed, timezone="UTC")
    dialled = JobFactory(batch=open_all_day)

    allowed = claim_and_gate()

    assert [job.pk for job in allowed] == [dialled.pk]
    waiting.refresh_from_db()
    assert waiting.status == JobStatus.SCHEDULED
    assert waiting.scheduled_at == opens
    assert waiting.attempts == 0
    assert waiting.dialed_at is None
    event = JobEvent.objects.get(job=waiting)
    assert event.action == "deferred"
    assert event.changes["code"] == "outside_window"
    assert "UTC" in event.reason
    entries = CreditEntry.objects.filter(job_pk=waiting.pk)
    assert entries.aggregate(s=Sum("amount"))["s"] == 0


def test_gate__a_holiday_defers_the_whole_local_day(account):
    today = database_now().astimezone(UTC).date()
    account.holidays = [today.isoformat(), (today + timedelta(days=1)).isoformat()]
    account.save()
    job = JobFactory(batch=BatchFactory(account=account), timezone="UTC")

    assert claim_and_gate() == []

    job.refresh_from_db()
    assert job.status == JobStatus.SCHEDULED
    assert job.scheduled_at == datetime.combine(
        today + timedelta(days=2), datetime.min.time(), UTC
    )
    assert JobEvent.objects.get(job=job).changes["code"] == "holiday"


def test_gate__one_off_jobs_use_the_default_window(account, settings):
    # CALLING_WINDOW_DEFAULT is every day: close it by hours instead, with a
    # window of an hour three hours away.
    now = database_now().astimezone(UTC)
    start = (now + timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    settings.CALLING_WINDOW_DEFAULT = f"{start:%H}:00-{start:%H}:59"
    job = JobFactory(batch=None, account=account, timezone="UTC")

    assert claim_and_gate() == []

    job.refresh_from_db()
    assert job.status == JobStatus.SCHEDULED
    assert job.scheduled_at in (start, start + timedelta(days=1))


def test_explain__outside_window_and_holiday(account):
    opens = later_day()
    batch = BatchFactory(
        account=account,
        calling_window={
            "start": "09:00",
            "end": "17:00",
            "days": [DAYS[opens.weekday()]],
        },
    )
    job = JobFactory(batch=batch, timezone="America/Chicago")
    now = database_now()

    [reason] = calling_window.explain(job, now)
    assert reason.code == "outside_window"
    assert "America/Chicago" in reason.detail
    assert "local time" in reason.detail
    assert reason.until is not None
    assert reason.until > now

    account.holidays = [now.astimezone(UTC).date().isoformat()]
    account.save()
    utc_job = JobFactory(batch=BatchFactory(account=account), timezone="UTC")
    [reason] = calling_window.explain(utc_job, now)
    assert reason.code == "holiday"

    open_job = JobFactory(batch=BatchFactory(account=BatchFactory().account))
    assert calling_window.explain(open_job, now) == []
