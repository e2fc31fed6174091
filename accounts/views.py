"""/api/v1/account/…: the account's credit balance, and topping it up."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, permissions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.actor import Actor, Source
from accounts.models import Account
from accounts.serializers import (
    CreditsAddedSerializer,
    CreditsAddSerializer,
    CreditsSerializer,
)
from accounts.services import call_reservation, credits_add

ADD_CREDITS_PERMISSION = "accounts.add_credits"


def _own_account(request: Request) -> Account | None:
    membership = getattr(request.user, "membership", None)
    return membership.account if membership is not None else None


def _target_account(request: Request, slug: str | None) -> Account:
    """Staff may act on any account; everyone else on their own only."""
    own = _own_account(request)
    if slug is None or (own is not None and own.slug == slug):
        if own is None:
            raise exceptions.ValidationError(
                {"account": ["Required: you belong to no account."]}
            )
        return own
    if not request.user.is_staff:
        raise exceptions.PermissionDenied("You may only act on your own account.")
    try:
        return Account.objects.get(slug=slug)
    except Account.DoesNotExist:
        raise exceptions.NotFound(f"No account {slug!r}.") from None


class CanAddCredits(permissions.BasePermission):
    message = (
        "Adding credits takes staff status or the accounts.add_credits permission."
    )

    def has_permission(self, request: Request, view: Any) -> bool:
        if request.method in permissions.SAFE_METHODS:
            return True
        user = request.user
        return bool(user.is_staff or user.has_perm(ADD_CREDITS_PERMISSION))


class AccountCreditsView(APIView):
    permission_classes = [permissions.IsAuthenticated, CanAddCredits]

    @extend_schema(responses=CreditsSerializer, summary="The account's balance")
    def get(self, request: Request) -> Response:
        account = _target_account(request, request.query_params.get("account"))
        data = {
            "account": account.slug,
            "credits": account.credits,
            "call_reservation": call_reservation(),
        }
        return Response(CreditsSerializer(data).data)

    @extend_schema(
        request=CreditsAddSerializer,
        responses=CreditsAddedSerializer,
        summary="Add credits",
        description=(
            "Adds credits to the account. If it can pay for a call again, the "
            "batches the system paused for lack of credits resume and suspended "
            "jobs return to the queue; batches a person paused stay paused. "
            "Staff, or users with the accounts.add_credits permission."
        ),
    )
    def post(self, request: Request) -> Response:
        payload = CreditsAddSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        account = _target_account(request, payload.validated_data.get("account"))
        result = credits_add(
            account=account,
            amount=payload.validated_data["amount"],
            actor=Actor.from_request(request, Source.API),
            note=payload.validated_data["note"],
        )
        data = {
            "account": account.slug,
            "added": payload.validated_data["amount"],
            "credits": result.balance,
            "resumed_batches": result.resumed_batches,
            "unsuspended_jobs": result.unsuspended_jobs,
        }
        return Response(CreditsAddedSerializer(data).data)
