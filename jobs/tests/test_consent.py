"""Consent for artificial voices (FCC 24-17): the batch's voice, the job's
consent_at (imports, the API) and the gate's refusal."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from batches.tests.factories import BatchFactory
from jobs import billing, lifecycle
from jobs.claim import claim_jobs
from jobs.models import Job, JobEvent, JobStatus
from jobs.tests.factories import JobFactory

pytestmark = pytest.mark.django_db(transaction=True)

CONSENT = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


def gate_round():
    jobs = claim_jobs(worker_id="w1", token="t", limit=10)
    payable = billing.reserve_calls(jobs, worker_id="w1", token="t")
    return lifecycle.mark_dialed(jobs=payable, worker_id="w1", token="t")


@pytest.mark.parametrize("voice", ["ai", "prerecorded"])
def test_gate__an_artificial_voice_needs_consent(account, voice):
    batch = BatchFactory(account=account, voice=voice)
    consented = JobFactory(batch=batch, consent_at=CONSENT)
    without = JobFactory(batch=batch)

    assert [job.pk for job in gate_round()] == [consented.pk]
    without.refresh_from_db()
    assert (without.status, without.stop_code, without.attempts) == (
        JobStatus.CANCELLED,
        "no_consent",
        0,
    )
    assert "FCC 24-17" in without.cancel_reason
    assert JobEvent.objects.get(job=without).changes["code"] == "no_consent"


def test_gate__a_human_voice_needs_none(account):
    job = JobFactory(batch=BatchFactory(account=account))

    assert [j.pk for j in gate_round()] == [job.pk]


def test_gate__a_voice_changed_while_jobs_wait_holds_for_them(account, api_client):
    batch = BatchFactory(account=account)
    job = JobFactory(batch=batch)
    response = api_client.patch(
        f"/api/v1/batches/{batch.batch_id}", {"voice": "ai"}, format="json"
    )
    assert response.status_code == 200, response.content

    assert gate_round() == []
    job.refresh_from_db()
    assert job.stop_code == "no_consent"


def test_batch_api__voice_on_create_and_a_bad_one_is_a_400(api_client):
    created = api_client.post(
        "/api/v1/batches", {"name": "Robo", "voice": "prerecorded"}, format="json"
    )
    assert created.status_code == 201, created.content
    assert created.json()["voice"] == "prerecorded"
    bad = api_client.post(
        "/api/v1/batches", {"name": "Bad", "voice": "robot"}, format="json"
    )
    assert bad.status_code == 400
    assert "voice" in bad.json()["error"]["fields"]


def test_imports__consent_at_column_in_json_and_csv(api_client, account):
    batch = BatchFactory(account=account, voice="ai")
    url = f"/api/v1/batches/{batch.batch_id}/jobs"
    as_json = api_client.post(
        url,
        [{"phone_number": "+14155550100", "consent_at": "2026-01-05T09:30:00Z"}],
        format="json",
    )
    assert as_json.status_code == 201, as_json.content
    csv_body = (
        b"phone_number,consent_at,name\n"
        b"+14155550101,2026-01-05T09:30:00Z,Ana\n"
        b"+14155550102,,Bo\n"
    )
    as_csv = api_client.post(url, csv_body, content_type="text/csv")
    assert as_csv.status_code == 201, as_csv.content

    consent = dict(Job.objects.values_list("phone_number", "consent_at"))
    assert consent == {
        "+14155550100": CONSENT,
        "+14155550101": CONSENT,
        "+14155550102": None,
    }
    assert Job.objects.get(phone_number="+14155550101").variables == {"name": "Ana"}


def test_imports__a_bad_consent_at_is_a_400_naming_row_and_field(api_client, account):
    batch = BatchFactory(account=account, voice="ai")
    response = api_client.post(
        f"/api/v1/batches/{batch.batch_id}/jobs",
        [
            {"phone_number": "+14155550100", "consent_at": "2026-01-05T09:30:00Z"},
            {"phone_number": "+14155550101", "consent_at": "yesterday"},
        ],
        format="json",
    )

    assert response.status_code == 400
    [row] = response.json()["error"]["rows"]
    assert row["row"] == 2
    assert any("consent_at" in e for e in row["errors"])
    assert not Job.objects.exists()


def test_job_api__consent_set_and_cleared_audited(api_client, account):
    job = JobFactory(batch=BatchFactory(account=account, voice="ai"))
    url = f"/api/v1/jobs/{job.pk}"

    response = api_client.patch(url, {"consent_at": CONSENT.isoformat()}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["consent_at"] == "2026-01-05T09:30:00Z"
    assert api_client.patch(url, {"consent_at": "x"}, format="json").status_code == 400
    assert api_client.patch(url, {"other": 1}, format="json").status_code == 400
    event = JobEvent.objects.get(job=job)
    assert (event.action, event.source) == ("updated", "api")

    assert [j.pk for j in gate_round()] == [job.pk]
    finished = api_client.patch(url, {"consent_at": None}, format="json")
    assert finished.status_code == 200  # in progress: still open
    Job.objects.filter(pk=job.pk).update(status=JobStatus.COMPLETED)
    assert api_client.patch(url, {"consent_at": None}, format="json").status_code == 409
