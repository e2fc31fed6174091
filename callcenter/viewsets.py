"""The base of /api/v1/'s views and viewsets, and the router that serves them.

A view acts for the caller's account (``callcenter.api.HasAccount`` has
already refused users without one), audits as an API ``Actor``, and wraps
creating POSTs in the Idempotency-Key check. Errors (``callcenter.api``'s
exception handler) and pagination (``ApiPagination``) come from the DRF
settings, so every view built on these gets them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import routers, viewsets
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response

from accounts.idempotency import idempotent
from callcenter.actor import Actor, Source
from callcenter.api import request_membership

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


class OptionalSlashRouter(routers.SimpleRouter):
    """Every route with and without a trailing slash, as
    ``callcenter.api.both_slashes`` does for single views: the original
    system's curl examples have none, and a client that adds one must not
    get a redirect (a redirected POST or PATCH loses its body). Only the bare
    form is named, so ``reverse()`` and the schema give that one."""

    def __init__(self) -> None:
        super().__init__(trailing_slash=False)

    def get_urls(self) -> list:
        bare = super().get_urls()
        self.trailing_slash = "/"
        try:
            slashed = super().get_urls()
        finally:
            self.trailing_slash = ""
        for pattern in slashed:
            pattern.name = None  # type: ignore[union-attr]  # all URLPatterns
        return [*bare, *slashed]
