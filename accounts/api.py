"""The account-scoped base of /api/v1/'s views and viewsets.

Tenancy: a request acts for the account of the user's Membership. A user with
no membership (for instance a staff superuser created for the admin) gets 403
``no_account`` from the API: staff work in the admin, integrations use a
member's token. ``accounts.permissions.HasAccount`` (DRF's default
permission) enforces it.

A view acts for the caller's account (``HasAccount`` has already refused users
without one), audits as an API ``Actor``, and wraps creating POSTs in the
Idempotency-Key check. The router that serves them is
``callcenter.routers.OptionalSlashRouter``. Errors (``callcenter.api``'s
exception handler) and pagination (``ApiPagination``) come from the DRF
settings, so every view built on these gets them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import viewsets
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response

from accounts.idempotency import idempotent
from accounts.permissions import request_membership
from callcenter.actor import Actor, Source

if TYPE_CHECKING:
    from accounts.models import Account

IDEMPOTENCY_PARAMETER = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=False,
    description="Retrying a POST with the same key returns the first response "
    "and never creates twice (kept API_IDEMPOTENCY_TTL_HOURS).",
)


class AccountScopedMixin:
    """The caller's account, the audit actor, and idempotent creation."""

    request: Any

    @property
    def account(self) -> Account:
        membership = request_membership(self.request)
        assert membership is not None  # HasAccount let the request in
        return membership.account

    def actor(self) -> Actor:
        return Actor.from_request(self.request, Source.API)

    def idempotent(
        self,
        create: Callable[[], Response],
        after_commit: Callable[[Response], Response] | None = None,
    ) -> Response:
        """``create()`` once per Idempotency-Key (accounts.idempotency)."""
        return idempotent(
            self.request,
            account=self.account,
            create=create,
            after_commit=after_commit,
        )


class AccountScopedView(AccountScopedMixin, GenericAPIView):
    """For endpoints that are not a resource's actions (file downloads)."""


class AccountScopedViewSet(AccountScopedMixin, viewsets.GenericViewSet):
    """For the resources: list, create, retrieve, partial_update, destroy and
    their @actions."""
