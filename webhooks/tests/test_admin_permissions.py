from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from accounts.tests.factories import AccountFactory, UserFactory
from webhooks.models import WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:webhooks_webhookdelivery_changelist")


def staff_with(*codenames):
    user = UserFactory(is_staff=True)
    for codename in codenames:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


def failed_delivery():
    endpoint = WebhookEndpoint.objects.create(
        account=AccountFactory(), url="https://hooks.example.com/in"
    )
    return WebhookDelivery.objects.create(
        endpoint=endpoint,
        event="batch.paused",
        payload={},
        status=WebhookDelivery.Status.FAILED,
        attempts=8,
    )


def test_retry_now__needs_the_change_permission(client):
    delivery = failed_delivery()
    client.force_login(staff_with("view_webhookdelivery"))

    page = client.get(CHANGELIST)
    assert page.status_code == 200
    assert 'value="retry_now"' not in page.content.decode()
    client.post(
        CHANGELIST, {"action": "retry_now", "_selected_action": [delivery.pk]}
    )

    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.FAILED


def test_retry_now__offered_with_the_change_permission(client):
    failed_delivery()
    client.force_login(staff_with("view_webhookdelivery", "change_webhookdelivery"))
    page = client.get(CHANGELIST)
    assert 'value="retry_now"' in page.content.decode()
