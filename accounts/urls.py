from __future__ import annotations

from accounts.views import AccountCreditsView
from callcenter.api import both_slashes
from webhooks.views import WebhookEndpointViewSet

app_name = "accounts"

webhook_list = WebhookEndpointViewSet.as_view({"get": "list", "post": "create"})
webhook_detail = WebhookEndpointViewSet.as_view(
    {"get": "retrieve", "patch": "partial_update", "put": "update", "delete": "destroy"}
)
webhook_deliveries = WebhookEndpointViewSet.as_view({"get": "deliveries"})
webhook_rotate_secret = WebhookEndpointViewSet.as_view({"post": "rotate_secret"})

urlpatterns = [
    *both_slashes("credits", AccountCreditsView.as_view(), "credits"),
    *both_slashes("webhooks", webhook_list, "webhooks"),
    *both_slashes("webhooks/<int:pk>", webhook_detail, "webhook"),
    *both_slashes(
        "webhooks/<int:pk>/deliveries", webhook_deliveries, "webhook-deliveries"
    ),
    *both_slashes(
        "webhooks/<int:pk>/rotate-secret",
        webhook_rotate_secret,
        "webhook-rotate-secret",
    ),
]
