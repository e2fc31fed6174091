"""/api/v1/account/webhooks: an account's endpoints and their deliveries.

A member manages the endpoints of their own account; a viewer may read them.
Users with no account (staff working in the admin) get 403.
"""

from __future__ import annotations

from typing import Any

from rest_framework import permissions, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.serializers import WebhookDeliverySerializer, WebhookEndpointSerializer

MAX_DELIVERIES = 100


class IsAccountMember(permissions.BasePermission):
    message = "Webhooks belong to an account; you belong to none, or may only read."

    def has_permission(self, request: Request, view: Any) -> bool:
        membership = getattr(request.user, "membership", None)
        if membership is None:
            return False
        return request.method in permissions.SAFE_METHODS or membership.can_write


class WebhookEndpointViewSet(viewsets.ModelViewSet):
    serializer_class = WebhookEndpointSerializer
    permission_classes = [permissions.IsAuthenticated, IsAccountMember]
    # An account has a handful of endpoints: a plain list, whatever the
    # project-wide pagination.
    pagination_class = None

    def get_queryset(self) -> Any:
        account_id = self.request.user.membership.account_id
        return WebhookEndpoint.objects.filter(account_id=account_id).order_by("id")

    def perform_create(self, serializer: WebhookEndpointSerializer) -> None:
        serializer.save(account_id=self.request.user.membership.account_id)

    @action(detail=True, methods=["get"])
    def deliveries(self, request: Request, pk: str | None = None) -> Response:
        """The latest deliveries of this endpoint, each with its attempts."""
        endpoint = self.get_object()
        deliveries = (
            WebhookDelivery.objects.filter(endpoint=endpoint)
            .prefetch_related("attempt_log")
            .order_by("-created_at", "-id")[:MAX_DELIVERIES]
        )
        return Response(WebhookDeliverySerializer(deliveries, many=True).data)
