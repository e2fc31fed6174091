"""The webhooks' part of /api/v1/ (included by callcenter/urls.py): the
account's endpoints, their deliveries and secret rotation."""

from __future__ import annotations

from callcenter.api import both_slashes
from webhooks.views import WebhookEndpointViewSet

W = "account/webhooks"

webhook_list = WebhookEndpointViewSet.as_view({"get": "list", "post": "create"})
webhook_detail = WebhookEndpointViewSet.as_view(
    {"get": "retrieve", "patch": "partial_update", "put": "update", "delete": "destroy"}
)
webhook_deliveries = WebhookEndpointViewSet.as_view({"get": "deliveries"})
webhook_rotate_secret = WebhookEndpointViewSet.as_view({"post": "rotate_secret"})

urlpatterns = [
    *both_slashes(W, webhook_list, "webhooks"),
    *both_slashes(f"{W}/<int:pk>", webhook_detail, "webhook"),
    *both_slashes(f"{W}/<int:pk>/deliveries", webhook_deliveries, "webhook-deliveries"),
    *both_slashes(
        f"{W}/<int:pk>/rotate-secret", webhook_rotate_secret, "webhook-rotate-secret"
    ),
]
