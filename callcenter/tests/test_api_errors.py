from __future__ import annotations

import pytest
from django.test import Client

from batches.tests.factories import BatchFactory
from batches.tests.test_api_batches import assert_error

pytestmark = [pytest.mark.django_db, pytest.mark.urls("callcenter.tests.crash_urls")]


@pytest.fixture
def no_raise():
    return Client(raise_request_exception=False)


@pytest.mark.parametrize("path", ["/api/v1/test-crash", "/api/v1/test-plain-crash"])
def test_api_errors__a_crash_under_api_is_json_500(api_client, path, caplog):
    api_client.raise_request_exception = False
    response = api_client.get(path)
    error = assert_error(response, 500, "server_error")
    assert "boom" not in error["message"]  # no internals leak
    assert any(r.exc_info for r in caplog.records if r.name == "callcenter.api")


def test_api_errors__a_crash_elsewhere_is_left_to_django(no_raise):
    response = no_raise.get("/elsewhere/crash")
    assert response.status_code == 500
    assert not response["Content-Type"].startswith("application/json")


def test_api_errors__non_api_404_stays_html(no_raise):
    response = no_raise.get("/no-such-page")
    assert response.status_code == 404
    assert not response["Content-Type"].startswith("application/json")


def test_api_errors__session_writes_need_csrf(member, account):
    batch = BatchFactory(account=account)
    client = Client(enforce_csrf_checks=True)
    client.force_login(member)
    response = client.put(f"/api/v1/batches/{batch.batch_id}/pause")
    error = assert_error(response, 403, "permission_denied")
    assert "CSRF" in error["message"]
    batch.refresh_from_db()
    assert batch.is_active is True
