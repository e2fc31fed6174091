from __future__ import annotations

import base64
import threading

import pytest
from django.db import connection, transaction
from django.test import override_settings
from rest_framework.test import APIClient

from accounts.models import Membership
from accounts.tests.factories import MembershipFactory, UserFactory
from callcenter.actor import Actor
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webhooks.services import WebhookEndpointLimitError, webhook_endpoint_create

pytestmark = pytest.mark.django_db

URL = "/api/v1/account/webhooks"


def client_for(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def member():
    return MembershipFactory().user


def test_webhooks_api__member_registers_an_endpoint_with_a_generated_secret(member):
    response = client_for(member).post(
        URL,
        {"url": "https://93.184.215.14/hooks", "event_types": ["batch.paused"]},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["secret"].startswith("whsec_")
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.account_id == member.membership.account_id
    assert endpoint.event_types == ["batch.paused"]


def test_webhooks_api__default_event_types_are_the_batch_events(member):
    response = client_for(member).post(
        URL, {"url": "https://93.184.215.14/hooks"}, format="json"
    )
    assert response.status_code == 201
    assert "job.completed" not in response.json()["event_types"]
    assert "batch.auto_paused" in response.json()["event_types"]


@override_settings(WEBHOOKS_ALLOW_PRIVATE_NETWORKS=False)
@pytest.mark.parametrize(
    "body",
    [
        {"url": "http://127.0.0.1/hooks"},
        {"url": "http://169.254.169.254/latest"},
        {"url": "ftp://93.184.215.14/"},
        {"url": "https://93.184.215.14/", "event_types": ["batch.exploded"]},
        {"url": "https://93.184.215.14/", "event_types": "batch.paused"},
    ],
)
def test_webhooks_api__refuses_private_urls_and_unknown_events(member, body):
    response = client_for(member).post(URL, body, format="json")
    assert response.status_code == 400, response.content
    assert not WebhookEndpoint.objects.exists()


def test_webhooks_api__tenancy_and_roles(member):
    other = WebhookEndpoint.objects.create(
        account=MembershipFactory().user.membership.account, url="https://1.1.1.1/"
    )
    own = WebhookEndpoint.objects.create(
        account=member.membership.account, url="https://1.0.0.1/"
    )
    client = client_for(member)
    assert [e["id"] for e in client.get(URL).json()] == [own.pk]
    assert client.get(f"{URL}/{other.pk}").status_code == 404
    assert client.delete(f"{URL}/{other.pk}").status_code == 404

    viewer = MembershipFactory(
        account=member.membership.account, role=Membership.Role.VIEWER
    ).user
    viewer_client = client_for(viewer)
    assert viewer_client.get(URL).status_code == 200
    assert (
        viewer_client.post(URL, {"url": "https://1.1.1.1/"}, format="json").status_code
        == 403
    )

    staff = UserFactory(username="ops", is_staff=True)
    assert client_for(staff).get(URL).status_code == 403
    assert APIClient().get(URL).status_code in (401, 403)

    assert (
        client.patch(f"{URL}/{own.pk}", {"is_active": False}, format="json").status_code
        == 200
    )
    own.refresh_from_db()
    assert own.is_active is False
    assert client.delete(f"{URL}/{own.pk}").status_code == 204


def test_webhooks_api__deliveries_show_every_attempt(member):
    endpoint = WebhookEndpoint.objects.create(
        account=member.membership.account, url="https://1.1.1.1/"
    )
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint, event="batch.paused", payload={"type": "batch.paused"}
    )
    WebhookAttempt.objects.create(delivery=delivery, number=1, status_code=500)
    WebhookAttempt.objects.create(delivery=delivery, number=2, status_code=200)

    response = client_for(member).get(f"{URL}/{endpoint.pk}/deliveries")

    assert response.status_code == 200
    [body] = response.json()
    assert body["delivery_id"] == str(delivery.delivery_id)
    assert [a["status_code"] for a in body["attempts_log"]] == [500, 200]


def test_webhooks_api__secret_is_shown_at_creation_and_rotation_only(member):
    client = client_for(member)
    created = client.post(URL, {"url": "https://1.1.1.1/hooks"}, format="json")
    assert created.status_code == 201
    first_secret = created.json()["secret"]
    endpoint = WebhookEndpoint.objects.get()
    assert first_secret == endpoint.secret
    viewer = MembershipFactory(
        account=member.membership.account, role=Membership.Role.VIEWER
    ).user

    for reader in (client, client_for(viewer)):
        listed = reader.get(URL).json()
        detail = reader.get(f"{URL}/{endpoint.pk}").json()
        assert "secret" not in listed[0]
        assert "secret" not in detail
        assert first_secret not in str(listed) + str(detail)
    patched = client.patch(
        f"{URL}/{endpoint.pk}", {"description": "crm"}, format="json"
    )
    assert patched.status_code == 200
    assert "secret" not in patched.json()

    assert (
        client_for(viewer).post(f"{URL}/{endpoint.pk}/rotate-secret").status_code == 403
    )
    endpoint.refresh_from_db()
    assert endpoint.secret == first_secret

    rotated = client.post(f"{URL}/{endpoint.pk}/rotate-secret")
    assert rotated.status_code == 200
    new_secret = rotated.json()["secret"]
    endpoint.refresh_from_db()
    assert new_secret == endpoint.secret
    assert new_secret != first_secret
    assert new_secret.startswith("whsec_")
    # A Standard Webhooks secret: the spec's base64 (not URL-safe) of 32 bytes.
    assert len(base64.b64decode(new_secret.removeprefix("whsec_"), validate=True)) == 32
    # The old secret keeps signing beside it for the default grace period;
    # it is never shown again.
    assert endpoint.previous_secret == first_secret
    assert rotated.json()["previous_secret_expires_at"] is not None
    assert first_secret not in str(client.get(f"{URL}/{endpoint.pk}").json())

    # A leaked secret: stopped at once.
    at_once = client.post(
        f"{URL}/{endpoint.pk}/rotate-secret",
        {"previous_secret_hours": 0},
        format="json",
    )
    assert at_once.status_code == 200
    endpoint.refresh_from_db()
    assert endpoint.previous_secret == ""
    assert at_once.json()["previous_secret_expires_at"] is None
    for bad in (
        {"previous_secret_hours": -1},
        {"previous_secret_hours": 169},
        {"grace": 1},
    ):
        refused = client.post(f"{URL}/{endpoint.pk}/rotate-secret", bad, format="json")
        assert refused.status_code == 400
        assert set(refused.json()["error"]["fields"]) == set(bad)
    endpoint.refresh_from_db()
    assert endpoint.secret == at_once.json()["secret"]


def test_webhooks_api__an_account_has_at_most_the_configured_endpoints(
    member, settings
):
    settings.WEBHOOK_MAX_ENDPOINTS_PER_ACCOUNT = 2
    client = client_for(member)
    ids = [
        client.post(URL, {"url": f"https://1.1.1.{n}/"}, format="json").json()["id"]
        for n in (1, 2)
    ]
    # Another account's endpoints do not count against this one.
    WebhookEndpoint.objects.create(
        account=MembershipFactory().user.membership.account, url="https://1.1.1.9/"
    )

    refused = client.post(URL, {"url": "https://1.1.1.3/"}, format="json")

    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "too_many_endpoints"
    assert "at most 2 webhook endpoints" in error["message"]
    own = WebhookEndpoint.objects.filter(account=member.membership.account)
    assert own.count() == 2
    # A deleted endpoint frees its place.
    assert client.delete(f"{URL}/{ids[0]}").status_code == 204
    assert (
        client.post(URL, {"url": "https://1.1.1.3/"}, format="json").status_code == 201
    )


def test_webhooks_api__deleting_an_endpoint_keeps_its_delivery_history(member):
    client = client_for(member)
    endpoint = WebhookEndpoint.objects.create(
        account=member.membership.account, url="https://1.1.1.1/"
    )
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint, event="batch.paused", payload={"type": "batch.paused"}
    )
    WebhookAttempt.objects.create(delivery=delivery, number=1, status_code=500)

    assert client.delete(f"{URL}/{endpoint.pk}").status_code == 204

    assert client.get(f"{URL}/{endpoint.pk}").status_code == 404
    assert client.get(f"{URL}/{endpoint.pk}/deliveries").status_code == 404
    assert client.get(URL).json() == []
    delivery.refresh_from_db()
    assert delivery.endpoint_id == endpoint.pk
    assert list(delivery.attempt_log.values_list("status_code", flat=True)) == [500]
    endpoint.refresh_from_db()
    assert endpoint.deleted_at is not None
    assert endpoint.is_active is False
    assert endpoint.secret == ""


def _waiting_on_a_lock() -> int:
    # pg_locks, not pg_stat_activity: the latter is a snapshot taken once per
    # transaction, and this runs inside one.
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_webhook_endpoint_create__two_at_once_cannot_both_take_the_last_place(
    settings,
):
    """One creation has counted and inserted but not committed; a second one,
    in another connection, must wait for it and then be refused, not count
    the same room and insert too."""
    settings.WEBHOOK_MAX_ENDPOINTS_PER_ACCOUNT = 1
    account = MembershipFactory().user.membership.account
    actor = Actor.system("tests")
    outcome: list[object] = []

    def second():
        try:
            webhook_endpoint_create(
                account_id=account.pk, actor=actor, url="https://1.1.1.2/"
            )
            outcome.append("created")
        except WebhookEndpointLimitError as exc:
            outcome.append(exc)
        finally:
            connection.close()

    with transaction.atomic():
        webhook_endpoint_create(
            account_id=account.pk, actor=actor, url="https://1.1.1.1/"
        )
        thread = threading.Thread(target=second)
        thread.start()
        # Either it blocks on our transaction, or (without the lock) it is
        # done already; only then do we commit.
        while thread.is_alive() and not _waiting_on_a_lock():
            thread.join(timeout=0.02)
    thread.join(timeout=30)

    assert len(outcome) == 1
    assert isinstance(outcome[0], WebhookEndpointLimitError)
    assert WebhookEndpoint.objects.filter(account=account).count() == 1
