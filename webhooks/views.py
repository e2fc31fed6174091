"""/api/v1/account/webhooks: an account's endpoints and their deliveries.

A member manages the endpoints of their own account; a viewer may read them,
but never their signing secrets: a secret is shown once, in the answer to the
creation or to ``POST …/rotate-secret``. Users with no account (staff working
in the admin) get 403.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from callcenter.actor import Actor, Source
from callcenter.api import error_responses
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.serializers import (
    RotateSecretSerializer,
    WebhookDeliverySerializer,
    WebhookEndpointSerializer,
    WebhookEndpointWithSecretSerializer,
)
from webhooks.services import (
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_rotate_secret,
)

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
        request=WebhookEndpointSerializer,
        responses={201: WebhookEndpointWithSecretSerializer, **error_responses()},
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
    rotate_secret=extend_schema(
        request=RotateSecretSerializer,
        responses={200: WebhookEndpointWithSecretSerializer, **error_responses()},
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

    def _actor(self) -> Actor:
        return Actor.from_request(self.request, Source.API)

    def get_queryset(self) -> Any:
        return WebhookEndpoint.objects.filter(
            account_id=self._account_id(), deleted_at__isnull=True
        ).order_by("id")

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        endpoint = webhook_endpoint_create(
            account_id=self._account_id(),
            actor=self._actor(),
            **serializer.validated_data,
        )
        return Response(
            WebhookEndpointWithSecretSerializer(endpoint).data,
            status=status.HTTP_201_CREATED,
        )

    def perform_destroy(self, instance: WebhookEndpoint) -> None:
        webhook_endpoint_delete(endpoint=instance, actor=self._actor())

    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request: Request, pk: str | None = None) -> Response:
        """A new signing secret, shown in this answer only. The old one keeps
        signing beside it for ``previous_secret_hours`` (0: it stops at once)."""
        options = RotateSecretSerializer(data=request.data)
        options.is_valid(raise_exception=True)
        endpoint = webhook_endpoint_rotate_secret(
            endpoint=self.get_object(),
            actor=self._actor(),
            previous_secret_hours=options.validated_data.get("previous_secret_hours"),
        )
        return Response(WebhookEndpointWithSecretSerializer(endpoint).data)

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
