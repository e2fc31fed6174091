from __future__ import annotations

from django.urls import path

from accounts.views import AccountCreditsView
from webhooks.views import WebhookEndpointViewSet

app_name = "accounts"

webhook_list = WebhookEndpointViewSet.as_view({"get": "list", "post": "create"})
webhook_detail = WebhookEndpointViewSet.as_view(
    {"get": "retrieve", "patch": "partial_update", "put": "update", "delete": "destroy"}
)
webhook_deliveries = WebhookEndpointViewSet.as_view({"get": "deliveries"})

urlpatterns = [
    path("credits", AccountCreditsView.as_view(), name="credits"),
    path("webhooks", webhook_list, name="webhooks"),
    path("webhooks/<int:pk>", webhook_detail, name="webhook"),
    path("webhooks/<int:pk>/deliveries", webhook_deliveries, name="webhook-deliveries"),
]
