"""/api/v1/account/webhooks: an account's endpoints and their deliveries.

A member manages the endpoints of their own account; a viewer may read them.
Users with no account (staff working in the admin) get 403.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import permissions, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from callcenter.api import error_responses
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


@extend_schema_view(
    list=extend_schema(
        responses={200: WebhookEndpointSerializer(many=True), **error_responses()}
    ),
    create=extend_schema(
        responses={201: WebhookEndpointSerializer, **error_responses()}
    ),
    retrieve=extend_schema(
        responses={200: WebhookEndpointSerializer, **error_responses()}
    ),
    update=extend_schema(
        responses={200: WebhookEndpointSerializer, **error_responses()}
    ),
    partial_update=extend_schema(
        responses={200: WebhookEndpointSerializer, **error_responses()}
    ),
    destroy=extend_schema(responses={204: None, **error_responses()}),
    deliveries=extend_schema(
        responses={200: WebhookDeliverySerializer(many=True), **error_responses()}
    ),
)
class WebhookEndpointViewSet(viewsets.ModelViewSet):
    serializer_class = WebhookEndpointSerializer
    permission_classes = [permissions.IsAuthenticated, IsAccountMember]
    # An account has a handful of endpoints: a plain list, whatever the
    # project-wide pagination.
    pagination_class = None

    def _account_id(self) -> int:
        # IsAccountMember has already refused users without a membership.
        return int(getattr(self.request.user, "membership").account_id)  # noqa: B009

    def get_queryset(self) -> Any:
        return WebhookEndpoint.objects.filter(account_id=self._account_id()).order_by(
            "id"
        )

    def perform_create(self, serializer: Any) -> None:
        serializer.save(account_id=self._account_id())

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
