"""Tenancy for /api/v1/: DRF's default permission and the caller's membership.

Kept apart from ``accounts.api``: DRF reads DEFAULT_PERMISSION_CLASSES while
``rest_framework.views`` is being imported, so this module must not import it.
"""

from __future__ import annotations

from django.utils.translation import gettext as _
from rest_framework import exceptions, permissions

from accounts.models import Membership
from callcenter.api import ApiError


def request_membership(request) -> Membership | None:
    """The user's membership (with its account), looked up once per request."""
    if not hasattr(request, "_cc_membership"):
        user = request.user
        membership = None
        if user is not None and user.is_authenticated:
            membership = (
                Membership.objects.select_related("account")
                .filter(user_id=user.pk)
                .first()
            )
        request._cc_membership = membership
    return request._cc_membership


class HasAccount(permissions.BasePermission):
    """Authenticated and member of an account; viewers may only read."""

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            raise exceptions.NotAuthenticated()
        membership = request_membership(request)
        if membership is None:
            raise ApiError(
                _(
                    "This user belongs to no account, so it has no batches or "
                    "jobs. Give it a membership: python manage.py "
                    "create_api_token USERNAME --account SLUG."
                ),
                code="no_account",
                status_code=403,
            )
        if request.method not in permissions.SAFE_METHODS and not (
            membership.can_write
        ):
            raise ApiError(
                _("Your role in this account is read-only."),
                code="read_only",
                status_code=403,
            )
        return True
