"""The batch report: GET /api/v1/batches/{id}/report and the batch page."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from accounts.models import CreditEntry
from batches import report
from batches.tests.factories import BatchFactory
from jobs.models import JobStatus
from jobs.tests.factories import JobFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 30, 12, 30, tzinfo=UTC)
H9, H10 = datetime(2026, 11, 30, 9, tzinfo=UTC), datetime(2026, 11, 30, 10, tzinfo=UTC)


@pytest.fixture(autouse=True, params=["sql", "python"])
def aggregation(request, monkeypatch):
    """Every test runs with PostgreSQL's aggregation and with Python's."""
    monkeypatch.setattr(report, "USE_SQL", request.param == "sql")
    return request.param


def call(start: datetime, outcome: str, seconds: float) -> dict:
    return {
        "outcome": outcome,
        "started_at": start.isoformat(),
        "ended_at": (start + timedelta(seconds=seconds)).isoformat(),
        "duration_seconds": seconds,
    }


@pytest.fixture
def batch(account):
    """Ten contacts called, durations 10..100 s; three still waiting."""
    batch = BatchFactory(account=account)
    for i in range(1, 11):
        hour = H9 if i <= 4 else H10
        outcome = "voicemail" if i == 7 else "answered"
        log = [call(hour + timedelta(minutes=i), outcome, 10.0 * i)]
        if i % 5 == 0:  # contacts 5 and 10: a busy first try
            log.insert(0, call(hour, "busy", 0))
        job = JobFactory(
            batch=batch,
            status=JobStatus.COMPLETED if i != 3 else JobStatus.FAILED,
            attempts=len(log),
            attempt_log=log,
            result={"outcome": outcome if i != 3 else "busy"},
            finished_at=NOW - timedelta(minutes=5 * i),
        )
        CreditEntry.objects.create(
            account=account,
            kind="reserve",
            amount=-3,
            balance_after=0,
            job_pk=job.pk,
            claim_key="k",
        )
    JobFactory(batch=batch, status=JobStatus.PENDING)
    JobFactory(batch=batch, status=JobStatus.PENDING)
    JobFactory(
        batch=batch, status=JobStatus.SCHEDULED, scheduled_at=NOW + timedelta(days=1)
    )
    return batch


def test_batch_report__figures(batch):
    with time_machine.travel(NOW, tick=False):
        r = report.batch_report(batch=batch)

    assert (r["total"], r["finished"], r["remaining"]) == (13, 10, 3)
    assert r["calls"] == 12  # ten contacts, two of them twice
    assert r["answered_calls"] == 10  # voicemail counts as answered
    assert r["answer_rate"] == round(10 / 12, 4)
    assert [(p["hour"], p["calls"], p["answered"]) for p in r["calls_per_hour"]] == [
        (H9, 4, 4),
        (H10, 8, 6),
    ]
    # Twelve durations: 0, 0 and 10..100; p90 interpolates between ranks.
    durations = sorted([0.0, 0.0] + [10.0 * i for i in range(1, 11)])
    rank = 0.9 * (len(durations) - 1)
    low = durations[int(rank)]
    expected_p90 = low + (durations[int(rank) + 1] - low) * (rank - int(rank))
    assert r["duration_seconds"] == {
        "calls": 12,
        "average": round(sum(durations) / 12, 2),
        "p90": round(expected_p90, 2),
    }
    assert r["attempts_per_contact"] == {
        "distribution": {"0": 3, "1": 8, "2": 2},
        "average": round(12 / 10, 3),
    }
    assert r["cost"] == 30
    finished: Counter[str] = Counter()
    for row in r["outcomes_over_time"]:
        finished.update(row["outcomes"])
    assert finished == {"answered": 8, "voicemail": 1, "busy": 1}


def test_batch_report__eta_at_the_last_hours_rate(batch):
    with time_machine.travel(NOW, tick=False):
        r = report.batch_report(batch=batch)

    # Jobs 1..10 finished 5..50 minutes ago: 10 in the last hour, 3 left.
    assert r["rate_per_hour"] == 10
    assert r["eta"]["seconds"] == round(3 / 10 * 3600)
    assert r["eta"]["at"] == NOW + timedelta(seconds=3 / 10 * 3600)


def test_batch_report__why_remaining_contacts_wait(batch):
    with time_machine.travel(NOW, tick=False):
        active = report.batch_report(batch=batch)
        batch.is_active = False
        batch.pause_reason = "script fix"
        batch.save()
        paused = report.batch_report(batch=batch)

    assert [(w["status"], w["count"]) for w in active["waiting"]] == [
        ("pending", 2),
        ("scheduled", 1),
    ]
    assert active["waiting"][0]["reason"] == report.WAITING_REASONS["pending"]
    assert {w["reason"] for w in paused["waiting"]} == {
        "the batch is paused (script fix)"
    }
    assert paused["eta"] == {"at": None, "seconds": None, "why_not": "paused"}
    assert active["explain_codes"] == [
        {"code": "scheduled", "count": 1, "reason": "scheduled for later"}
    ]
    assert paused["explain_codes"][0]["code"] == "batch_paused"


def test_batch_report__an_empty_batch(account):
    r = report.batch_report(batch=BatchFactory(account=account))

    assert r["calls"] == 0
    assert r["answer_rate"] is None
    assert r["duration_seconds"] == {"calls": 0, "average": None, "p90": None}
    assert r["eta"]["why_not"] == "nothing left to call"


def test_report_api__answers_the_report(api_client, batch):
    with time_machine.travel(NOW, tick=False):
        response = api_client.get(f"/api/v1/batches/{batch.batch_id}/report")

    assert response.status_code == 200
    body = response.json()
    assert body["calls"] == 12
    assert body["cost"] == 30
    assert body["eta"]["at"] == "2026-11-30T12:48:00Z"


def test_report_api__another_accounts_batch_is_404(other_client, batch):
    response = other_client.get(f"/api/v1/batches/{batch.batch_id}/report")
    assert response.status_code == 404


def test_batch_page__shows_the_report_with_svg_charts(admin_client, batch):
    with time_machine.travel(NOW, tick=False):
        response = admin_client.get(f"/admin/batches/batch/{batch.pk}/change/")

    html = response.content.decode()
    assert 'id="cc-report"' in html
    assert html.count("<svg") >= 3
    assert 'data-series="answered"' in html
    assert "<title>11-30 09:00 — answered: 4</title>" in html
    assert "10 answered or voicemail" in html
    assert "30 credits" in html
