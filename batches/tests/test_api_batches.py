from __future__ import annotations

import json

import pytest
from django.utils import timezone
from rest_framework import serializers

from accounts.tests.factories import UserFactory
from batches import services
from batches.models import Batch, BatchEvent
from batches.tests.factories import BatchFactory
from jobs.models import Job, JobStatus
from jobs.tests.factories import JobFactory

pytestmark = pytest.mark.django_db

BASE = "/api/v1/batches"


def assert_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert {"code", "message", "fields"} <= set(body["error"])
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    if code:
        assert body["error"]["code"] == code
    return body["error"]


@pytest.fixture
def batch(account):
    return BatchFactory(account=account, name="Renewals", priority=1)


# --- Auth and tenancy ----------------------------------------------------------


def test_batches_api__anonymous_is_401_with_www_authenticate(client):
    response = client.get(BASE)
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == "Token"


def test_batches_api__bad_token_is_401(client):
    response = client.get(BASE, HTTP_AUTHORIZATION="Token nope")
    assert_error(response, 401, "authentication_failed")


def test_batches_api__user_without_account_is_403(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    assert_error(client.get(BASE), 403, "no_account")


def test_batches_api__session_auth_works_for_members(client, member, batch):
    client.force_login(member)
    response = client.get(f"{BASE}/{batch.batch_id}")
    assert response.status_code == 200
    assert response.json()["batch_id"] == batch.batch_id


def test_batches_api__other_accounts_batch_is_404_for_every_route(other_client, batch):
    url = f"{BASE}/{batch.batch_id}"
    assert_error(other_client.get(url), 404, "not_found")
    assert_error(other_client.patch(url, {"name": "x"}), 404)
    assert_error(other_client.delete(url), 404)
    assert_error(other_client.put(f"{url}/pause"), 404)
    assert_error(other_client.put(f"{url}/resume"), 404)
    assert_error(other_client.post(f"{url}/cancel"), 404)
    assert_error(other_client.get(f"{url}/stats"), 404)
    assert_error(other_client.get(f"{url}/jobs"), 404)
    assert_error(
        other_client.post(f"{url}/jobs", [{"phone_number": "+14155550100"}]), 404
    )
    assert other_client.get(BASE).json()["count"] == 0
    batch.refresh_from_db()
    assert batch.is_active
    assert batch.name == "Renewals"
    assert batch.deleted_at is None


def test_batches_api__viewer_reads_but_cannot_write(viewer_client, batch):
    url = f"{BASE}/{batch.batch_id}"
    assert viewer_client.get(url).status_code == 200
    assert viewer_client.get(f"{url}/stats").status_code == 200
    assert_error(viewer_client.post(BASE, {"name": "x"}), 403, "read_only")
    assert_error(viewer_client.patch(url, {"is_active": False}), 403, "read_only")
    assert_error(viewer_client.put(f"{url}/pause"), 403, "read_only")
    assert_error(viewer_client.post(f"{url}/cancel"), 403, "read_only")
    assert_error(viewer_client.delete(url), 403, "read_only")
    batch.refresh_from_db()
    assert batch.is_active is True


@pytest.mark.parametrize("suffix", ["", "/"])
def test_batches_api__every_route_works_with_and_without_trailing_slash(
    api_client, batch, suffix
):
    url = f"{BASE}/{batch.batch_id}"
    assert api_client.get(f"{BASE}{suffix}").status_code == 200
    assert api_client.get(f"{url}{suffix}").status_code == 200
    assert api_client.get(f"{url}/stats{suffix}").status_code == 200
    assert api_client.get(f"{url}/jobs{suffix}").status_code == 200
    assert api_client.put(f"{url}/pause{suffix}").status_code == 200
    assert api_client.put(f"{url}/resume{suffix}").status_code == 200
    assert api_client.patch(f"{url}{suffix}", {"priority": 3}).status_code == 200
    assert api_client.post(f"{BASE}{suffix}", {"name": "n"}).status_code == 201
    assert api_client.post(f"{url}/cancel{suffix}").status_code == 200
    assert api_client.delete(f"{url}{suffix}").status_code == 200
    assert api_client.get("/api/v1/jobs" + suffix).status_code == 200


@pytest.mark.parametrize(
    ("rate", "allowed"), [("2/min", 2), ("5/min", 5)], ids=["2", "5"]
)
def test_batches_api__throttles_per_token(
    api_client, other_client, settings, rate, allowed
):
    settings.API_THROTTLE_RATE = rate
    for _ in range(allowed):
        assert api_client.get(BASE).status_code == 200
    response = api_client.get(BASE)
    assert_error(response, 429, "throttled")
    assert int(response["Retry-After"]) > 0
    # Another token has its own budget.
    assert other_client.get(BASE).status_code == 200


# --- List and create -------------------------------------------------------------


def test_batches_list__only_own_account_paginated_with_counts(
    api_client, account, settings
):
    settings.API_PAGE_SIZE = 2
    mine = [BatchFactory(account=account, priority=p) for p in (1, 5, 3)]
    BatchFactory()  # another account's
    JobFactory.create_batch(2, batch=mine[0])
    JobFactory(batch=mine[0], status=JobStatus.DONE)
    response = api_client.get(BASE, {"ordering": "-priority"})
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3
    assert [b["priority"] for b in body["results"]] == [5, 3]
    assert body["next"]
    page2 = api_client.get(BASE, {"ordering": "-priority", "page": 2}).json()
    assert [b["priority"] for b in page2["results"]] == [1]
    counts = page2["results"][0]["job_counts"]
    assert counts["pending"] == 2
    assert counts["completed"] == 1
    assert "done" not in counts


def test_batches_list__page_size_is_capped(api_client, account, settings):
    settings.API_MAX_PAGE_SIZE = 2
    BatchFactory.create_batch(3, account=account)
    body = api_client.get(BASE, {"page_size": 100}).json()
    assert len(body["results"]) == 2


def test_batches_list__filters_by_state(api_client, account, api_actor):
    active = BatchFactory(account=account)
    paused = BatchFactory(account=account)
    services.batch_pause(batch=paused, actor=api_actor)
    cancelled = BatchFactory(account=account)
    services.batch_cancel(batch=cancelled, actor=api_actor)
    done = BatchFactory(account=account, completed_at=timezone.now())
    expected = {
        "active": active,
        "paused": paused,
        "cancelled": cancelled,
        "completed": done,
    }
    for state, batch in expected.items():
        results = api_client.get(BASE, {"state": state}).json()["results"]
        assert [b["batch_id"] for b in results] == [batch.batch_id], state
        assert results[0]["state"] == state


@pytest.mark.parametrize(
    "params", [{"ordering": "password"}, {"state": "deleted"}, {"ordering": "id;"}]
)
def test_batches_list__bad_query_params_are_400(api_client, params):
    error = assert_error(api_client.get(BASE, params), 400, "invalid")
    assert set(error["fields"]) == set(params)


def test_batches_list__invalid_page_is_404(api_client):
    assert_error(api_client.get(BASE, {"page": 99}), 404, "not_found")


def test_batches_list__query_count_does_not_grow_with_batches(
    api_client, account, django_assert_num_queries
):
    for _ in range(5):
        JobFactory.create_batch(2, batch=BatchFactory(account=account))
    # token, membership, count, page, job counts
    with django_assert_num_queries(5):
        assert len(api_client.get(BASE).json()["results"]) == 5
    for _ in range(5):
        JobFactory.create_batch(2, batch=BatchFactory(account=account))
    with django_assert_num_queries(5):
        assert len(api_client.get(BASE).json()["results"]) == 10


def test_batches_create__creates_audited_batch(api_client, account, member):
    response = api_client.post(
        BASE, {"name": "Renewals", "description": "Q4", "priority": 2}
    )
    assert response.status_code == 201
    body = response.json()
    assert body["batch_id"].startswith("batch-")
    assert body["state"] == "active"
    assert body["job_counts"]["pending"] == 0
    assert response["Location"] == f"{BASE}/{body['batch_id']}"
    batch = Batch.objects.get(batch_id=body["batch_id"])
    assert batch.account == account
    event = batch.events.get()
    assert event.action == BatchEvent.Action.CREATED
    assert event.actor == member
    assert event.source == "api"


def test_batches_create__paused_when_is_active_false(api_client):
    body = api_client.post(BASE, {"name": "Later", "is_active": False}).json()
    assert body["is_active"] is False
    assert body["state"] == "paused"


def test_batches_create__with_jobs_in_one_request(api_client):
    response = api_client.post(
        BASE,
        {
            "name": "With jobs",
            "jobs": [
                {"phone_number": "+1 415 555 0100", "variables": {"name": "Ana"}},
                {"phone_number": "(415) 555-0101"},
            ],
        },
    )
    assert response.status_code == 201, response.content
    batch = Batch.objects.get(batch_id=response.json()["batch_id"])
    assert sorted(batch.jobs.values_list("phone_number", flat=True)) == [
        "+14155550100",
        "+14155550101",
    ]
    assert response.json()["job_counts"]["pending"] == 2


def test_batches_create__bad_job_rows_create_nothing(api_client):
    response = api_client.post(
        BASE,
        {
            "name": "x",
            "jobs": [{"phone_number": "+14155550100"}, {"phone_number": "1"}],
        },
    )
    error = assert_error(response, 400, "invalid_rows")
    assert [r["row"] for r in error["rows"]] == [2]
    assert not Batch.all_objects.exists()
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": 123}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "x", "priority": "high"}, "priority"),
        ({"name": "x", "priority": 1.5}, "priority"),
        ({"name": "x", "priority": True}, "priority"),
        ({"name": "x", "priority": 10**12}, "priority"),
        ({"name": "x", "is_active": "no"}, "is_active"),
        ({"name": "x", "is_active": 0}, "is_active"),
        ({"name": "x", "colour": "red"}, "colour"),
        ({"name": "x\x00y"}, "name"),
        ({"name": "x", "jobs": "nope"}, "jobs"),
    ],
)
def test_batches_create__invalid_input_is_400_with_field_errors(
    api_client, body, field
):
    error = assert_error(api_client.post(BASE, body), 400, "invalid")
    assert field in error["fields"]
    assert not Batch.all_objects.exists()


def test_batches_create__non_object_body_is_400(api_client):
    assert_error(api_client.post(BASE, ["x"]), 400, "invalid")


def test_batches_create__malformed_json_is_400(api_client):
    response = api_client.generic(
        "POST", BASE, "{not json", content_type="application/json"
    )
    assert_error(response, 400, "parse_error")


def test_batches_create__form_body_is_415(api_client):
    response = api_client.post(BASE, "name=x", content_type="text/plain")
    assert_error(response, 415, "unsupported_media_type")


# --- Detail, PATCH, delete --------------------------------------------------------


def test_batches_retrieve__returns_the_batch(api_client, batch):
    body = api_client.get(f"{BASE}/{batch.batch_id}").json()
    assert body["batch_id"] == batch.batch_id
    assert body["name"] == "Renewals"
    assert body["state"] == "active"
    assert set(body) >= {"is_active", "pause_reason", "updated_at", "job_counts"}


@pytest.mark.parametrize(
    "batch_id", ["nope", "x" * 65, "bad%00id", "%F0%9F%98%80", "a b"]
)
def test_batches_retrieve__unknown_or_odd_ids_are_404(api_client, batch_id):
    assert_error(api_client.get(f"{BASE}/{batch_id}"), 404)


def test_batches_update__original_pause_body(api_client, batch):
    # Verbatim from the original system's examples: -d '{"is_active": false}'
    response = api_client.patch(
        f"{BASE}/{batch.batch_id}",
        '{"is_active": false}',
        content_type="application/json",
    )
    assert response.status_code == 200
    body = response.json()
    assert body["updated_fields"] == ["is_active"]
    assert body["batch"]["is_active"] is False
    assert body["batch"]["state"] == "paused"
    batch.refresh_from_db()
    assert batch.is_active is False
    assert batch.pause_source == "api"


def test_batches_update__original_resume_body(api_client, batch, api_actor):
    services.batch_pause(batch=batch, actor=api_actor)
    response = api_client.patch(
        f"{BASE}/{batch.batch_id}",
        '{"is_active": true}',
        content_type="application/json",
    )
    assert response.status_code == 200
    assert response.json()["updated_fields"] == ["is_active"]
    batch.refresh_from_db()
    assert batch.is_active is True


def test_batches_update__original_multi_field_body(api_client, batch):
    body = """{
    "is_active": false,
    "name": "Campaña Actualizada",
    "priority": 2
  }"""
    response = api_client.patch(
        f"{BASE}/{batch.batch_id}", body, content_type="application/json"
    )
    assert response.status_code == 200
    data = response.json()
    assert sorted(data["updated_fields"]) == ["is_active", "name", "priority"]
    assert data["batch"]["name"] == "Campaña Actualizada"
    assert data["batch"]["priority"] == 2
    assert "Updated" in data["message"]
    batch.refresh_from_db()
    assert (batch.is_active, batch.name, batch.priority) == (
        False,
        "Campaña Actualizada",
        2,
    )


def test_batches_update__only_changed_fields_are_reported(api_client, batch):
    response = api_client.patch(
        f"{BASE}/{batch.batch_id}", {"name": "Renewals", "priority": 7}
    )
    assert response.json()["updated_fields"] == ["priority"]


def test_batches_update__no_change_says_so(api_client, batch):
    before = batch.events.count()
    for body in ({"is_active": True, "name": "Renewals"}, {}):
        response = api_client.patch(f"{BASE}/{batch.batch_id}", body)
        assert response.status_code == 200
        data = response.json()
        assert data["updated_fields"] == []
        assert data["message"] == "No changes."
    assert batch.events.count() == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"is_active": "no"}, "is_active"),
        ({"is_active": "false"}, "is_active"),
        ({"is_active": 1}, "is_active"),
        ({"is_active": None}, "is_active"),
        ({"priority": "high"}, "priority"),
        ({"priority": "2"}, "priority"),
        ({"priority": 2.0}, "priority"),
        ({"name": None}, "name"),
        ({"name": ""}, "name"),
        ({"description": 5}, "description"),
        ({"status": "paused"}, "status"),
        ({"batch_id": "other"}, "batch_id"),
    ],
)
def test_batches_update__wrong_types_and_unknown_fields_are_400(
    api_client, batch, body, field
):
    error = assert_error(
        api_client.patch(f"{BASE}/{batch.batch_id}", body), 400, "invalid"
    )
    assert field in error["fields"]
    batch.refresh_from_db()
    assert batch.is_active is True
    assert batch.priority == 1


def test_batches_update__reactivating_cancelled_batch_is_409(
    api_client, batch, api_actor
):
    services.batch_cancel(batch=batch, actor=api_actor)
    response = api_client.patch(f"{BASE}/{batch.batch_id}", {"is_active": True})
    assert_error(response, 409, "batch_cancelled")
    batch.refresh_from_db()
    assert batch.is_active is False


def test_batches_update__put_is_405(api_client, batch):
    response = api_client.put(f"{BASE}/{batch.batch_id}", {"name": "x"})
    assert_error(response, 405, "method_not_allowed")


def test_batches_delete__cancels_open_jobs_and_keeps_history(api_client, batch):
    pending = JobFactory(batch=batch)
    done = JobFactory(batch=batch, status=JobStatus.COMPLETED)
    response = api_client.delete(f"{BASE}/{batch.batch_id}")
    assert response.status_code == 200
    body = response.json()
    assert body == {
        "batch_id": batch.batch_id,
        "deleted": True,
        "cancelled_jobs": 1,
        "deleted_jobs": 0,
        "message": "Batch deleted.",
    }
    pending.refresh_from_db()
    done.refresh_from_db()
    assert pending.status == JobStatus.CANCELLED
    assert pending.cancel_reason == "Batch deleted"
    assert done.status == JobStatus.COMPLETED
    url = f"{BASE}/{batch.batch_id}"
    assert_error(api_client.get(url), 404)
    assert_error(api_client.delete(url), 404)
    assert_error(api_client.patch(url, {"is_active": True}), 404)
    assert_error(api_client.put(f"{url}/resume"), 404)
    assert api_client.get(BASE).json()["count"] == 0


def test_batches_delete__delete_jobs_true_removes_jobs(api_client, batch):
    JobFactory.create_batch(2, batch=batch)
    JobFactory(batch=batch, status=JobStatus.FAILED)
    response = api_client.delete(f"{BASE}/{batch.batch_id}?delete_jobs=true")
    assert response.status_code == 200
    assert response.json()["deleted_jobs"] == 3
    assert not Job.objects.filter(batch=batch).exists()


@pytest.mark.parametrize("value", ["yes", "1", "", "maybe"])
def test_batches_delete__delete_jobs_must_be_true_or_false(api_client, batch, value):
    response = api_client.delete(f"{BASE}/{batch.batch_id}?delete_jobs={value}")
    error = assert_error(response, 400, "invalid")
    assert "delete_jobs" in error["fields"]
    batch.refresh_from_db()
    assert batch.deleted_at is None


# --- Pause, resume, cancel ---------------------------------------------------------


@pytest.mark.parametrize("method", ["put", "post"])
def test_batches_pause__legacy_route_is_idempotent(api_client, batch, method):
    url = f"{BASE}/{batch.batch_id}/pause"
    first = getattr(api_client, method)(url)
    assert first.status_code == 200
    assert first.json()["changed"] is True
    assert first.json()["batch"]["state"] == "paused"
    second = getattr(api_client, method)(url)
    assert second.status_code == 200
    assert second.json()["changed"] is False
    assert second.json()["message"] == "Nothing to do: the batch is paused."
    assert batch.events.filter(action=BatchEvent.Action.PAUSED).count() == 1


def test_batches_pause__records_reason(api_client, batch):
    api_client.put(f"{BASE}/{batch.batch_id}/pause", {"reason": "wrong script"})
    batch.refresh_from_db()
    assert batch.pause_reason == "wrong script"
    stats = api_client.get(f"{BASE}/{batch.batch_id}/stats").json()
    assert stats["pause_reason"] == "wrong script"


def test_batches_pause__bad_body_is_400(api_client, batch):
    response = api_client.put(f"{BASE}/{batch.batch_id}/pause", {"why": 1})
    assert_error(response, 400, "invalid")


@pytest.mark.parametrize("method", ["put", "post"])
def test_batches_resume__legacy_route_is_idempotent(
    api_client, batch, api_actor, method
):
    services.batch_pause(batch=batch, actor=api_actor)
    url = f"{BASE}/{batch.batch_id}/resume"
    first = getattr(api_client, method)(url)
    assert first.json()["changed"] is True
    assert first.json()["batch"]["is_active"] is True
    second = getattr(api_client, method)(url)
    assert second.status_code == 200
    assert second.json()["changed"] is False


def test_batches_resume__cancelled_batch_is_409(api_client, batch, api_actor):
    services.batch_cancel(batch=batch, actor=api_actor)
    response = api_client.put(f"{BASE}/{batch.batch_id}/resume")
    assert_error(response, 409, "batch_cancelled")


def test_batches_cancel__cancels_open_jobs_and_is_permanent(api_client, batch):
    open_job = JobFactory(batch=batch)
    finished = JobFactory(batch=batch, status=JobStatus.FAILED)
    response = api_client.post(f"{BASE}/{batch.batch_id}/cancel")
    assert response.status_code == 200
    body = response.json()
    assert body["cancelled_jobs"] == 1
    assert body["changed"] is True
    assert body["batch"]["state"] == "cancelled"
    open_job.refresh_from_db()
    finished.refresh_from_db()
    assert open_job.status == JobStatus.CANCELLED
    assert open_job.cancel_reason == "Batch cancelled"
    assert finished.status == JobStatus.FAILED
    again = api_client.post(f"{BASE}/{batch.batch_id}/cancel").json()
    assert again["changed"] is False
    assert again["cancelled_jobs"] == 0


def test_batches_cancel__get_is_405(api_client, batch):
    assert_error(api_client.get(f"{BASE}/{batch.batch_id}/cancel"), 405)


# --- Stats -------------------------------------------------------------------------


def test_batches_stats__counts_progress_and_call_times(api_client, batch, api_actor):
    t0 = timezone.now()
    JobFactory(batch=batch, status=JobStatus.PENDING)
    JobFactory(batch=batch, status=JobStatus.IN_PROGRESS, started_at=t0)
    JobFactory(batch=batch, status=JobStatus.DONE, started_at=t0.replace(year=2024))
    JobFactory(batch=batch, status=JobStatus.CANCELLED, cancel_reason="x")
    services.batch_pause(batch=batch, actor=api_actor, reason="script review")
    body = api_client.get(f"{BASE}/{batch.batch_id}/stats").json()
    assert body["counts"]["cancelled"] == 1
    assert body["counts"]["completed"] == 1
    assert body["counts"]["pending"] == 1
    assert body["in_progress"] == 1
    assert body["total"] == 4
    assert body["finished"] == 2
    assert body["progress"] == 0.5
    assert body["state"] == "paused"
    assert body["pause_reason"] == "script review"
    assert body["first_call_at"].startswith("2024-")
    assert body["last_call_at"] is not None


def test_batches_stats__empty_batch(api_client, batch):
    body = api_client.get(f"{BASE}/{batch.batch_id}/stats").json()
    assert body["total"] == 0
    assert body["progress"] == 0.0
    assert body["first_call_at"] is None


def test_batches_api__unknown_api_url_is_json_404(api_client):
    response = api_client.get("/api/v1/nothing-here")
    assert_error(response, 404, "not_found")
    response = api_client.get("/api/v2/batches")
    assert_error(response, 404, "not_found")


def test_batches_api__errors_serialise_as_json_even_with_browsable_accept(api_client):
    response = api_client.get(BASE + "/nope", HTTP_ACCEPT="application/json")
    assert json.loads(response.content)["error"]["code"] == "not_found"


def test_batches_api__options_answers_on_every_route(api_client, batch):
    url = f"{BASE}/{batch.batch_id}"
    for path in (BASE, url, f"{url}/pause", f"{url}/resume", f"{url}/cancel"):
        response = api_client.options(path)
        assert response.status_code == 200, path
        assert "actions" not in response.json()


def test_batches_api__browsable_api_renders_every_route(client, member, batch):
    job = JobFactory(batch=batch)
    client.force_login(member)
    url = f"{BASE}/{batch.batch_id}"
    paths = [
        BASE,
        url,
        f"{url}/pause",
        f"{url}/resume",
        f"{url}/cancel",
        f"{url}/stats",
        f"{url}/jobs",
        "/api/v1/jobs",
        f"/api/v1/jobs/{job.pk}",
        f"/api/v1/jobs/{job.pk}/cancel",
    ]
    for path in paths:
        response = client.get(path, HTTP_ACCEPT="text/html")
        assert response.status_code in (200, 405), path
        assert response["Content-Type"].startswith("text/html"), path


def test_batches_api__detail_and_stats_query_counts(
    api_client, batch, django_assert_num_queries
):
    JobFactory.create_batch(3, batch=batch)
    url = f"{BASE}/{batch.batch_id}"
    # token, membership, batch, job counts
    with django_assert_num_queries(4):
        assert api_client.get(url).status_code == 200
    # token, membership, batch, job counts, call times
    with django_assert_num_queries(5):
        assert api_client.get(f"{url}/stats").status_code == 200


def test_batches_api__audit_records_api_user_and_address(api_client, batch, member):
    api_client.patch(
        f"{BASE}/{batch.batch_id}", {"priority": 4}, REMOTE_ADDR="203.0.113.9"
    )
    event = batch.events.get(action=BatchEvent.Action.UPDATED)
    assert event.source == "api"
    assert event.actor == member
    assert event.remote_addr == "203.0.113.9"
    assert event.changes == {"priority": [1, 4]}


@pytest.mark.parametrize(
    "body",
    [
        "[" * 100_000 + "]" * 100_000,
        '{"name": "x", "priority": NaN}',
        '{"name": "x", "priority": Infinity}',
        b"\xff\xfe{",
    ],
    ids=["too-deep", "nan", "infinity", "not-utf8"],
)
def test_batches_create__unparseable_json_is_400(api_client, batch, body):
    for url in (BASE, f"{BASE}/{batch.batch_id}", f"{BASE}/{batch.batch_id}/jobs"):
        method = "PATCH" if url.endswith(batch.batch_id) else "POST"
        response = api_client.generic(
            method, url, body, content_type="application/json"
        )
        assert_error(response, 400, "parse_error")


def test_pause__on_cancelled_batch_says_it_is_cancelled(api_client, account, api_actor):
    batch = BatchFactory(account=account)
    services.batch_cancel(batch=batch, actor=api_actor)
    response = api_client.put(f"/api/v1/batches/{batch.batch_id}/pause")
    assert response.status_code == 200
    assert response.json()["changed"] is False
    assert response.json()["message"] == "Nothing to do: the batch is cancelled."


# --- A staff pause ------------------------------------------------------------------


def test_batches_resume__a_staff_pause_is_403_for_a_member(
    api_client, batch, staff_user
):
    from callcenter.actor import Actor, Source

    staff = Actor(source=Source.ADMIN, user=staff_user)
    services.batch_pause(batch=batch, actor=staff, reason="wrong script")
    url = f"{BASE}/{batch.batch_id}"

    error = assert_error(api_client.put(f"{url}/resume"), 403, "paused_by_staff")
    assert "paused by staff" in error["message"]
    assert "wrong script" in error["message"]
    assert_error(api_client.patch(url, {"is_active": True}), 403, "paused_by_staff")
    # Other fields stay editable, and pausing again is a no-op.
    renamed = api_client.patch(url, {"name": "Renamed"})
    assert renamed.status_code == 200, renamed.content
    assert api_client.put(f"{url}/pause").json()["changed"] is False
    batch.refresh_from_db()
    assert batch.is_active is False
    assert batch.paused_by_staff is True


@pytest.mark.parametrize(
    ("query", "field", "value"),
    [
        ("?state=nope", "state", "nope"),
        # One ordering field: a comma list (django-filter's OrderingFilter) is 400.
        ("?ordering=name,-priority", "ordering", "name,-priority"),
    ],
)
def test_batches_list__bad_filter_value_is_400_with_drfs_message(
    api_client, query, field, value
):
    error = assert_error(api_client.get(f"{BASE}{query}"), 400, "invalid")
    expected = serializers.ChoiceField(choices=[]).error_messages["invalid_choice"]
    assert error["fields"] == {field: [expected.format(input=value)]}
