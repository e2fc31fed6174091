"""The batch API's caps and circuit breaker: shown, set, and refused with a
400 naming the field when wrong, with nothing half-applied."""

from __future__ import annotations

import pytest

from batches.models import Batch
from batches.tests.factories import BatchFactory
from batches.tests.test_api_batches import BASE, assert_error

pytestmark = pytest.mark.django_db

BREAKER = {"window": 20, "max_failure_ratio": 0.5}


def test_batches_create__with_caps_and_breaker(api_client):
    response = api_client.post(
        BASE,
        {"name": "Renewals", "max_concurrent_calls": 5, "breaker": BREAKER},
        format="json",
    )

    assert response.status_code == 201, response.content
    data = response.json()
    assert (data["max_concurrent_calls"], data["breaker"]) == (5, BREAKER)
    batch = Batch.objects.get()
    assert (batch.max_concurrent_calls, batch.breaker) == (5, BREAKER)


def test_batches_update__sets_and_clears_the_caps(api_client, account):
    batch = BatchFactory(account=account)
    url = f"{BASE}/{batch.batch_id}"

    response = api_client.patch(
        url, {"max_concurrent_calls": 2, "breaker": BREAKER}, format="json"
    )
    assert response.status_code == 200, response.content
    assert sorted(response.json()["updated_fields"]) == [
        "breaker",
        "max_concurrent_calls",
    ]
    response = api_client.patch(
        url, {"max_concurrent_calls": None, "breaker": None}, format="json"
    )
    assert response.status_code == 200, response.content
    batch.refresh_from_db()
    assert (batch.max_concurrent_calls, batch.breaker) == (None, None)
    assert batch.events.filter(action="updated").count() == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"max_concurrent_calls": -1}, "max_concurrent_calls"),
        ({"max_concurrent_calls": "3"}, "max_concurrent_calls"),
        ({"max_concurrent_calls": 1.5}, "max_concurrent_calls"),
        ({"breaker": {"window": 0, "max_failure_ratio": 0.5}}, "breaker"),
        ({"breaker": {"window": 10, "max_failure_ratio": 1.2}}, "breaker"),
        ({"breaker": {"window": 10, "max_failure_ratio": -0.2}}, "breaker"),
        ({"breaker": {"window": 10}}, "breaker"),
        ({"breaker": [10, 0.5]}, "breaker"),
    ],
)
def test_batches_update__bad_caps_are_400_naming_the_field_and_change_nothing(
    api_client, account, body, field
):
    batch = BatchFactory(account=account, name="Renewals")
    # A good field beside the bad one is not applied either.
    response = api_client.patch(
        f"{BASE}/{batch.batch_id}", {"name": "Other", **body}, format="json"
    )

    error = assert_error(response, 400, "invalid")
    assert field in error["fields"]
    if field == "breaker":
        assert isinstance(error["fields"]["breaker"], dict | list)
    batch.refresh_from_db()
    assert (batch.name, batch.max_concurrent_calls, batch.breaker) == (
        "Renewals",
        None,
        None,
    )


def test_batches_update__a_bad_ratio_names_the_breaker_subfield(api_client, account):
    batch = BatchFactory(account=account)
    response = api_client.patch(
        f"{BASE}/{batch.batch_id}",
        {"breaker": {"window": 10, "max_failure_ratio": 2}},
        format="json",
    )

    error = assert_error(response, 400, "invalid")
    assert "max_failure_ratio" in str(error["fields"]["breaker"])


def test_batches_create__bad_caps_create_nothing(api_client):
    response = api_client.post(
        BASE, {"name": "x", "max_concurrent_calls": -5}, format="json"
    )

    error = assert_error(response, 400, "invalid")
    assert "max_concurrent_calls" in error["fields"]
    assert not Batch.all_objects.exists()
