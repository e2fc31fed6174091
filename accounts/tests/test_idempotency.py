from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
import time_machine
from django.db import connection, connections
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import IdempotencyKey
from accounts.tokens import api_token_create
from batches.models import Batch
from batches.tests.factories import BatchFactory
from batches.tests.test_api_batches import assert_error
from jobs.models import Job

BASE = "/api/v1/batches"


@pytest.mark.django_db
def test_idempotency__retry_returns_first_response_and_creates_once(api_client):
    first = api_client.post(BASE, {"name": "Renewals"}, HTTP_IDEMPOTENCY_KEY="k-1")
    again = api_client.post(BASE, {"name": "Renewals"}, HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert Batch.objects.count() == 1


@pytest.mark.django_db
def test_idempotency__without_key_every_post_creates(api_client):
    api_client.post(BASE, {"name": "a"})
    api_client.post(BASE, {"name": "a"})
    assert Batch.objects.count() == 2


@pytest.mark.django_db
def test_idempotency__same_key_different_body_is_422(api_client):
    api_client.post(BASE, {"name": "a"}, HTTP_IDEMPOTENCY_KEY="k-1")
    response = api_client.post(BASE, {"name": "b"}, HTTP_IDEMPOTENCY_KEY="k-1")
    assert_error(response, 422, "idempotency_key_reused")
    assert Batch.objects.count() == 1


@pytest.mark.django_db
def test_idempotency__same_key_other_endpoint_is_422(api_client, account):
    batch = BatchFactory(account=account)
    api_client.post(BASE, {"name": "a"}, HTTP_IDEMPOTENCY_KEY="k-1")
    response = api_client.post(
        f"{BASE}/{batch.batch_id}/jobs",
        [{"phone_number": "+14155550100"}],
        HTTP_IDEMPOTENCY_KEY="k-1",
    )
    assert_error(response, 422, "idempotency_key_reused")
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_idempotency__keys_are_per_account(api_client, other_client):
    api_client.post(BASE, {"name": "a"}, HTTP_IDEMPOTENCY_KEY="k-1")
    other = other_client.post(BASE, {"name": "a"}, HTTP_IDEMPOTENCY_KEY="k-1")
    assert other.status_code == 201
    assert "Idempotent-Replayed" not in other
    assert Batch.objects.count() == 2


@pytest.mark.django_db
def test_idempotency__failed_request_is_not_stored(api_client):
    bad = api_client.post(BASE, {"name": 5}, HTTP_IDEMPOTENCY_KEY="k-1")
    assert bad.status_code == 400
    assert not IdempotencyKey.objects.exists()
    good = api_client.post(BASE, {"name": "a"}, HTTP_IDEMPOTENCY_KEY="k-1")
    assert good.status_code == 201


@pytest.mark.django_db
def test_idempotency__expired_key_can_be_reused(api_client, settings):
    settings.API_IDEMPOTENCY_TTL_HOURS = 1
    api_client.post(BASE, {"name": "a"}, HTTP_IDEMPOTENCY_KEY="k-1")
    with time_machine.travel(timezone.now() + timedelta(hours=2)):
        again = api_client.post(BASE, {"name": "a"}, HTTP_IDEMPOTENCY_KEY="k-1")
    assert "Idempotent-Replayed" not in again
    assert Batch.objects.count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9"])
def test_idempotency__invalid_key_is_400(api_client, key):
    response = api_client.post(BASE, {"name": "a"}, HTTP_IDEMPOTENCY_KEY=key)
    assert_error(response, 400, "invalid_idempotency_key")
    assert not Batch.objects.exists()


@pytest.mark.django_db
def test_idempotency__csv_import_retry_imports_once(api_client, account):
    batch = BatchFactory(account=account)
    url = f"{BASE}/{batch.batch_id}/jobs"
    csv = "phone_number\n+14155550100\n"
    for _ in range(2):
        response = api_client.generic(
            "POST", url, csv, content_type="text/csv", HTTP_IDEMPOTENCY_KEY="imp-1"
        )
        assert response.status_code == 201
    assert Job.objects.filter(batch=batch).count() == 1
    other = api_client.generic(
        "POST",
        url,
        "phone_number\n+14155550101\n",
        content_type="text/csv",
        HTTP_IDEMPOTENCY_KEY="imp-1",
    )
    assert_error(other, 422)


def _waiting_backends() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_idempotency__concurrent_retries_import_once(member, account):
    """Two requests with one key, truly overlapping: the first holds the key
    row while it waits for the batch's import lock; the second waits on the
    key's unique index. Neither may import twice."""
    key = api_token_create(user=member)
    batch = BatchFactory(account=account)
    url = f"{BASE}/{batch.batch_id}/jobs"
    rows = [{"phone_number": f"+1415555{i:04d}"} for i in range(50)]
    results: list[tuple[int, dict, bool]] = []

    def post():
        try:
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
            response = client.post(url, rows, format="json", HTTP_IDEMPOTENCY_KEY="c-1")
            results.append(
                (
                    response.status_code,
                    response.json(),
                    "Idempotent-Replayed" in response,
                )
            )
        finally:
            connections.close_all()

    # Hold the batch's import lock so both requests pile up behind it.
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s, %s)", [0x6A6F6273, batch.pk])
        threads = [threading.Thread(target=post) for _ in range(2)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20
        while _waiting_backends() < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _waiting_backends() == 2
        cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [0x6A6F6273, batch.pk])
    for t in threads:
        t.join(30)
    assert sorted((status, replayed) for status, _, replayed in results) == [
        (201, False),
        (201, True),
    ]
    assert results[0][1] == results[1][1]
    assert Job.objects.filter(batch=batch).count() == 50
    assert IdempotencyKey.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_idempotency__concurrent_batch_creates_create_once(member):
    key = api_token_create(user=member)
    barrier = threading.Barrier(4)
    statuses: list[tuple[int, str]] = []

    def post():
        try:
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
            barrier.wait(10)
            response = client.post(
                BASE, {"name": "Once"}, format="json", HTTP_IDEMPOTENCY_KEY="b-1"
            )
            statuses.append((response.status_code, response.json()["batch_id"]))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=post) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [s for s, _ in statuses] == [201] * 4
    assert len({batch_id for _, batch_id in statuses}) == 1
    assert Batch.objects.count() == 1


@pytest.mark.django_db
def test_idempotency_keys_purge__deletes_only_expired_keys(api_client, settings):
    from accounts.idempotency import idempotency_keys_purge

    settings.API_IDEMPOTENCY_TTL_HOURS = 1
    api_client.post(BASE, {"name": "old"}, HTTP_IDEMPOTENCY_KEY="old")
    with time_machine.travel(timezone.now() + timedelta(minutes=90)):
        api_client.post(BASE, {"name": "new"}, HTTP_IDEMPOTENCY_KEY="new")
        assert idempotency_keys_purge() == 1
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["new"]
