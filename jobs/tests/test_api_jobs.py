from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from batches import services
from batches.tests.factories import BatchFactory
from batches.tests.test_api_batches import assert_error
from jobs.claim import claim_jobs
from jobs.models import Job, JobEvent, JobStatus
from jobs.tests.factories import JobFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def batch(account):
    return BatchFactory(account=account)


def jobs_url(batch) -> str:
    return f"/api/v1/batches/{batch.batch_id}/jobs"


# --- Listing ---------------------------------------------------------------------


def test_batch_jobs_list__filters_by_status_done_means_completed(api_client, batch):
    JobFactory(batch=batch, status=JobStatus.PENDING)
    a = JobFactory(batch=batch, status=JobStatus.COMPLETED)
    b = JobFactory(batch=batch, status=JobStatus.DONE)
    for status in ("completed", "done"):
        body = api_client.get(jobs_url(batch), {"status": status}).json()
        assert {j["id"] for j in body["results"]} == {a.pk, b.pk}
        assert {j["status"] for j in body["results"]} == {"completed"}
    assert api_client.get(jobs_url(batch)).json()["count"] == 3


def test_batch_jobs_list__bad_status_is_400(api_client, batch):
    error = assert_error(api_client.get(jobs_url(batch), {"status": "lost"}), 400)
    assert "status" in error["fields"]


def test_batch_jobs_list__orders_by_allowlist(api_client, batch):
    low = JobFactory(batch=batch, priority=1)
    high = JobFactory(batch=batch, priority=9)
    body = api_client.get(jobs_url(batch), {"ordering": "-priority"}).json()
    assert [j["id"] for j in body["results"]] == [high.pk, low.pk]
    assert_error(api_client.get(jobs_url(batch), {"ordering": "phone_number"}), 400)


def test_batch_jobs_list__query_count_is_constant(
    api_client, batch, django_assert_num_queries
):
    JobFactory.create_batch(3, batch=batch)
    # token, membership, batch, count, page
    with django_assert_num_queries(5):
        api_client.get(jobs_url(batch))
    JobFactory.create_batch(10, batch=batch)
    with django_assert_num_queries(5):
        assert len(api_client.get(jobs_url(batch)).json()["results"]) == 13


def test_jobs_list__scoped_to_account_and_filtered(api_client, account, batch):
    other_batch = BatchFactory(account=account)
    mine = JobFactory(batch=batch, phone_number="+14155550100")
    JobFactory(batch=other_batch, phone_number="+14155550101", status="failed")
    JobFactory(phone_number="+14155550100")  # another account's
    body = api_client.get("/api/v1/jobs").json()
    assert body["count"] == 2
    by_batch = api_client.get("/api/v1/jobs", {"batch": batch.batch_id}).json()
    assert [j["id"] for j in by_batch["results"]] == [mine.pk]
    assert by_batch["results"][0]["batch_id"] == batch.batch_id
    by_phone = api_client.get("/api/v1/jobs", {"phone": "(415) 555-0100"}).json()
    assert [j["id"] for j in by_phone["results"]] == [mine.pk]
    by_status = api_client.get("/api/v1/jobs", {"status": "failed"}).json()
    assert by_status["count"] == 1


@pytest.mark.parametrize(
    ("params", "field"),
    [({"phone": "abc"}, "phone"), ({"batch": "bad id!"}, "batch")],
)
def test_jobs_list__bad_filters_are_400(api_client, params, field):
    error = assert_error(api_client.get("/api/v1/jobs", params), 400, "invalid")
    assert field in error["fields"]


def test_jobs_list__query_count_is_constant(
    api_client, account, django_assert_num_queries
):
    for _ in range(3):
        JobFactory(batch=BatchFactory(account=account))
    JobFactory(batch=None, account=account)
    # token, membership, count, page (with its batch joined)
    with django_assert_num_queries(4):
        api_client.get("/api/v1/jobs")
    for _ in range(5):
        JobFactory(batch=BatchFactory(account=account))
    with django_assert_num_queries(4):
        assert len(api_client.get("/api/v1/jobs").json()["results"]) == 9


def test_jobs_retrieve__shows_claim_outcome_and_cancel_reason(api_client, batch):
    now = timezone.now()
    job = JobFactory(
        batch=batch,
        status=JobStatus.CANCELLED,
        attempts=2,
        claimed_by="worker-1",
        claimed_at=now,
        result={"outcome": "answered", "duration": 12},
        cancel_reason="Batch cancelled",
    )
    body = api_client.get(f"/api/v1/jobs/{job.pk}").json()
    assert body["status"] == "cancelled"
    assert body["attempts"] == 2
    assert body["claimed_by"] == "worker-1"
    assert body["claimed_at"] is not None
    assert body["outcome"] == "answered"
    assert body["result"]["duration"] == 12
    assert body["cancel_reason"] == "Batch cancelled"
    assert body["batch_id"] == batch.batch_id


def test_jobs_retrieve__other_account_or_missing_is_404(
    other_client, api_client, batch
):
    job = JobFactory(batch=batch)
    assert_error(other_client.get(f"/api/v1/jobs/{job.pk}"), 404)
    assert_error(other_client.post(f"/api/v1/jobs/{job.pk}/cancel"), 404)
    assert_error(api_client.get("/api/v1/jobs/999999999"), 404)
    assert_error(api_client.get(f"/api/v1/jobs/{2**70}"), 404)
    assert_error(api_client.get("/api/v1/jobs/abc"), 404)


def test_jobs_cancel__cancels_with_reason_and_audit(api_client, batch, member):
    job = JobFactory(batch=batch)
    response = api_client.post(f"/api/v1/jobs/{job.pk}/cancel/", {"reason": "asked"})
    assert response.status_code == 200
    body = response.json()
    assert body["job"]["status"] == "cancelled"
    assert body["job"]["cancel_reason"] == "asked"
    event = JobEvent.objects.get(job=job)
    assert event.actor == member
    assert event.source == "api"


def test_jobs_cancel__default_reason_and_finished_job_is_409(api_client, batch):
    job = JobFactory(batch=batch)
    assert api_client.post(f"/api/v1/jobs/{job.pk}/cancel").json()["job"][
        "cancel_reason"
    ] == ("Cancelled by hand")
    error = assert_error(api_client.post(f"/api/v1/jobs/{job.pk}/cancel"), 409)
    assert error["code"] == "job_not_cancellable"


def test_jobs_cancel__viewer_is_403_and_bad_body_is_400(
    viewer_client, api_client, batch
):
    job = JobFactory(batch=batch)
    assert_error(viewer_client.post(f"/api/v1/jobs/{job.pk}/cancel"), 403)
    assert_error(api_client.post(f"/api/v1/jobs/{job.pk}/cancel", {"why": "x"}), 400)
    job.refresh_from_db()
    assert job.status == JobStatus.PENDING


# --- Import -----------------------------------------------------------------------


def test_batch_jobs_import__json_list(api_client, batch):
    later = (timezone.now() + timedelta(days=1)).isoformat()
    response = api_client.post(
        jobs_url(batch),
        [
            {"phone_number": "+1 (415) 555-0100", "variables": {"name": "Ana"}},
            {"phone_number": "415.555.0101", "priority": 5},
            {"phone_number": "+34 612 345 678", "scheduled_at": later},
        ],
    )
    assert response.status_code == 201, response.content
    assert response.json() == {
        "batch_id": batch.batch_id,
        "created": 3,
        "pending": 2,
        "scheduled": 1,
        "message": "3 jobs imported.",
    }
    jobs = {j.phone_number: j for j in Job.objects.filter(batch=batch)}
    assert set(jobs) == {"+14155550100", "+14155550101", "+34612345678"}
    assert jobs["+14155550100"].variables == {"name": "Ana"}
    assert jobs["+14155550101"].priority == 5
    assert jobs["+34612345678"].status == JobStatus.SCHEDULED
    assert all(j.account_id == batch.account_id for j in jobs.values())


def test_batch_jobs_import__jobs_object_form(api_client, batch):
    response = api_client.post(
        jobs_url(batch),
        {
            "jobs": [
                {"phone_number": "+14155550100", "variables": {"name": "Ana"}},
                {"phone_number": "+14155550101"},
            ]
        },
    )
    assert response.status_code == 201, response.content
    assert response.json()["created"] == 2
    jobs = Job.objects.filter(batch=batch).order_by("phone_number")
    assert [(j.phone_number, j.status, j.variables) for j in jobs] == [
        ("+14155550100", JobStatus.PENDING, {"name": "Ana"}),
        ("+14155550101", JobStatus.PENDING, {}),
    ]


def test_batch_jobs_import__csv_upload(api_client, batch):
    csv = (
        "phone_number,first_name,plan,priority,scheduled_at\n"
        "+14155550100,Ana,gold,2,\n"
        '"(415) 555-0101","Luis, Jr.",silver,,2099-01-01T09:00:00Z\n'
    )
    upload = SimpleUploadedFile("contacts.csv", csv.encode(), "text/csv")
    response = api_client.post(jobs_url(batch), {"file": upload}, format="multipart")
    assert response.status_code == 201, response.content
    assert response.json()["scheduled"] == 1
    ana = Job.objects.get(batch=batch, phone_number="+14155550100")
    assert ana.variables == {"first_name": "Ana", "plan": "gold"}
    assert ana.priority == 2
    luis = Job.objects.get(batch=batch, phone_number="+14155550101")
    assert luis.variables == {"first_name": "Luis, Jr.", "plan": "silver"}
    assert luis.status == JobStatus.SCHEDULED


def test_batch_jobs_import__text_csv_body(api_client, batch):
    response = api_client.generic(
        "POST",
        jobs_url(batch),
        "\ufeffphone_number,name\r\n+14155550100,Ana\r\n",
        content_type="text/csv",
    )
    assert response.status_code == 201, response.content
    assert Job.objects.get(batch=batch).variables == {"name": "Ana"}


def test_batch_jobs_import__every_bad_row_reported_nothing_written(api_client, batch):
    JobFactory(batch=batch, phone_number="+14155550199")
    csv = (
        "phone_number,name\n"
        "+14155550100,ok\n"  # line 2
        "not a number,x\n"  # line 3
        "+14155550100,dup\n"  # line 4: repeated in the upload
        "(415) 555-0199,exists\n"  # line 5: already in the batch
        ",empty\n"  # line 6
        "+14155550102\n"  # line 7: wrong width
    )
    upload = SimpleUploadedFile("c.csv", csv.encode(), "text/csv")
    response = api_client.post(jobs_url(batch), {"file": upload}, format="multipart")
    error = assert_error(response, 400, "invalid_rows")
    assert [r["row"] for r in error["rows"]] == [3, 4, 5, 6, 7]
    reasons = {r["row"]: " ".join(r["errors"]) for r in error["rows"]}
    assert "not a valid phone number" in reasons[3]
    assert "row 2" in reasons[4]
    assert "already a job of this batch" in reasons[5]
    assert "required" in reasons[6]
    assert "columns" in reasons[7]
    assert "nothing was imported" in error["message"]
    assert Job.objects.filter(batch=batch).count() == 1


@pytest.mark.parametrize(
    ("row", "needle"),
    [
        ({"phone_number": 14155550100}, "must be a string"),
        ({"phone_number": "+14155550100", "colour": "red"}, "Unknown fields"),
        ({"phone_number": "+14155550100", "variables": [1]}, "variables"),
        ({"phone_number": "+14155550100", "variables": {"a": "x\x00"}}, "NUL"),
        ({"phone_number": "+14155550100", "priority": "high"}, "priority"),
        ({"phone_number": "+14155550100", "priority": 10**9}, "priority"),
        ({"phone_number": "+14155550100", "scheduled_at": "tomorrow"}, "scheduled_at"),
        ({"phone_number": "+999999"}, "not a valid phone number"),
        ("just a string", "object"),
    ],
)
def test_batch_jobs_import__json_row_errors(api_client, batch, row, needle):
    response = api_client.post(jobs_url(batch), [row])
    error = assert_error(response, 400, "invalid_rows")
    assert error["rows"][0]["row"] == 1
    assert needle in " ".join(error["rows"][0]["errors"])
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    ("body", "kwargs"),
    [
        ([], {}),
        ({"phone_number": "+14155550100"}, {}),
        ({"jobs": "x"}, {}),
        ("name\nAna\n", {"content_type": "text/csv"}),
        ("", {"content_type": "text/csv"}),
        (b"phone_number\n\xff\xfe\n", {"content_type": "text/csv"}),
    ],
    ids=["empty", "object", "jobs-not-list", "no-phone-col", "empty-csv", "not-utf8"],
)
def test_batch_jobs_import__unreadable_uploads_are_400(api_client, batch, body, kwargs):
    if kwargs:
        response = api_client.generic("POST", jobs_url(batch), body, **kwargs)
    else:
        response = api_client.post(jobs_url(batch), body)
    assert_error(response, 400)


def test_batch_jobs_import__too_many_rows_is_413(api_client, batch, settings):
    settings.API_IMPORT_MAX_ROWS = 2
    rows = [{"phone_number": f"+1415555010{i}"} for i in range(3)]
    assert_error(api_client.post(jobs_url(batch), rows), 413, "too_many_rows")


def test_batch_jobs_import__cancelled_batch_is_409(api_client, batch, api_actor):
    services.batch_cancel(batch=batch, actor=api_actor)
    response = api_client.post(jobs_url(batch), [{"phone_number": "+14155550100"}])
    assert_error(response, 409, "batch_cancelled")


def test_batch_jobs_import__deleted_batch_is_404(api_client, batch, api_actor):
    services.batch_delete(batch=batch, actor=api_actor)
    response = api_client.post(jobs_url(batch), [{"phone_number": "+14155550100"}])
    assert_error(response, 404)


def test_batch_jobs_import__paused_batch_takes_jobs(api_client, batch, api_actor):
    services.batch_pause(batch=batch, actor=api_actor)
    response = api_client.post(jobs_url(batch), [{"phone_number": "+14155550100"}])
    assert response.status_code == 201, response.content
    job = Job.objects.get(batch=batch)
    assert (job.phone_number, job.status) == ("+14155550100", JobStatus.PENDING)
    # The batch stays paused: its new job waits for a resume.
    batch.refresh_from_db()
    assert batch.is_active is False
    assert claim_jobs(worker_id="w", limit=10) == []


def test_batch_jobs_import__reopens_a_completed_batch(api_client, batch):
    batch.completed_at = timezone.now()
    batch.save()
    api_client.post(jobs_url(batch), [{"phone_number": "+14155550100"}])
    batch.refresh_from_db()
    assert batch.completed_at is None


def test_batch_jobs_import__viewer_is_403(viewer_client, batch):
    response = viewer_client.post(jobs_url(batch), [{"phone_number": "+14155550100"}])
    assert_error(response, 403, "read_only")


def test_batch_jobs_import__too_many_form_fields_is_400(api_client, batch, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 5
    data = {f"f{i}": "x" for i in range(10)}
    data["file"] = SimpleUploadedFile("c.csv", b"phone_number\n+14155550100\n")
    response = api_client.post(jobs_url(batch), data, format="multipart")
    assert_error(response, 400, "bad_request")
    assert not Job.objects.exists()
