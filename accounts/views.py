"""/api/v1/account/…: the account's credit balance, and topping it up."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, permissions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.credits import call_reservation, credits_add, credits_unsuspend_jobs
from accounts.idempotency import idempotent
from accounts.models import Account
from accounts.serializers import (
    AccountCreatedSerializer,
    AccountCreateSerializer,
    CreditsAddedSerializer,
    CreditsAddSerializer,
    CreditsSerializer,
)
from accounts.services import account_create, unknown_account_message
from callcenter.actor import Actor, Source
from callcenter.api import error_responses

ADD_CREDITS_PERMISSION = "accounts.add_credits"
VIEW_ACCOUNT_PERMISSION = "accounts.view_account"

IDEMPOTENCY_PARAMETER = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=False,
    description="Retrying with the same key returns the first response and "
    "never adds the credits twice (kept API_IDEMPOTENCY_TTL_HOURS).",
)


def _own_account(request: Request) -> Account | None:
    membership = getattr(request.user, "membership", None)
    return membership.account if membership is not None else None


def _target_account(request: Request, slug: str | None, *, permission: str) -> Account:
    """The user's own account by default. Another account takes what the
    admin takes for it: staff status and ``permission`` (a superuser has
    every permission). Staff status alone is not enough."""
    own = _own_account(request)
    if slug is None or (own is not None and own.slug == slug):
        if own is None:
            raise exceptions.ValidationError(
                {"account": ["Required: you belong to no account."]}
            )
        return own
    user = request.user
    if not (user.is_staff and user.has_perm(permission)):
        raise exceptions.PermissionDenied(
            "You may only act on your own account; another account takes staff "
            f"status and the {permission} permission."
        )
    try:
        return Account.objects.get(slug=slug)
    except Account.DoesNotExist:
        raise exceptions.NotFound(unknown_account_message(slug)) from None


class CanAddCredits(permissions.BasePermission):
    message = "Adding credits takes the accounts.add_credits permission."

    def has_permission(self, request: Request, view: Any) -> bool:
        if request.method in permissions.SAFE_METHODS:
            return True
        return bool(request.user.has_perm(ADD_CREDITS_PERMISSION))


class AccountCreditsView(APIView):
    permission_classes = [permissions.IsAuthenticated, CanAddCredits]

    @extend_schema(
        responses={200: CreditsSerializer, **error_responses()},
        summary="The account's balance",
    )
    def get(self, request: Request) -> Response:
        account = _target_account(
            request,
            request.query_params.get("account"),
            permission=VIEW_ACCOUNT_PERMISSION,
        )
        data = {
            "account": account.slug,
            "credits": account.credits,
            "call_reservation": call_reservation(),
        }
        return Response(CreditsSerializer(data).data)

    @extend_schema(
        request=CreditsAddSerializer,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={200: CreditsAddedSerializer, **error_responses(422)},
        summary="Add credits",
        description=(
            "Adds credits to the account. If it can pay for a call again, the "
            "batches the system paused for lack of credits resume and suspended "
            "jobs return to the queue; batches a person paused stay paused. "
            "Takes the accounts.add_credits permission (a superuser has it); "
            "another account's slug also takes staff status."
        ),
    )
    def post(self, request: Request) -> Response:
        payload = CreditsAddSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        account = _target_account(
            request,
            payload.validated_data.get("account"),
            permission=ADD_CREDITS_PERMISSION,
        )
        amount = payload.validated_data["amount"]

        def add() -> Response:
            result = credits_add(
                account=account,
                amount=amount,
                actor=Actor.from_request(request, Source.API),
                note=payload.validated_data["note"],
                restore_jobs=False,
            )
            data = {
                "account": account.slug,
                "added": amount,
                "credits": result.balance,
                "resumed_batches": result.resumed_batches,
                "unsuspended_jobs": 0,
            }
            return Response(CreditsAddedSerializer(data).data)

        def restore_jobs(response: Response) -> Response:
            response.data["unsuspended_jobs"] = credits_unsuspend_jobs(
                account_id=account.pk
            )
            return response

        # The key is the target account's, as for batches and imports.
        return idempotent(
            request, account=account, create=add, after_commit=restore_jobs
        )


ADD_ACCOUNT_PERMISSION = "accounts.add_account"


class CanCreateAccounts(permissions.BasePermission):
    message = (
        "Creating accounts takes staff status and the accounts.add_account "
        "permission."
    )

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user.is_staff and user.has_perm(ADD_ACCOUNT_PERMISSION))


class AccountListView(APIView):
    permission_classes = [permissions.IsAuthenticated, CanCreateAccounts]

    @extend_schema(
        operation_id="accounts_create",
        request=AccountCreateSerializer,
        responses={201: AccountCreatedSerializer, **error_responses(409)},
        summary="Create an account",
        description=(
            "Staff with the accounts.add_account permission create an account "
            "(audited). Initial `credits` are booked in the ledger and also "
            "take accounts.add_credits. An existing slug is 409. Then make a "
            "member and its token: python manage.py create_api_token USER "
            "--account SLUG --create-user."
        ),
    )
    def post(self, request: Request) -> Response:
        payload = AccountCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        if data["credits"] and not request.user.has_perm(ADD_CREDITS_PERMISSION):
            raise exceptions.PermissionDenied(
                "Initial credits take the accounts.add_credits permission."
            )
        result = account_create(
            slug=data["slug"],
            name=data["name"],
            credits=data["credits"],
            actor=Actor.from_request(request, Source.API),
        )
        account = result.account
        body = {
            "account": {
                "slug": account.slug,
                "name": account.name,
                "credits": account.credits,
                "created_at": account.created_at,
            },
            "message": f"Account {account.slug!r} created.",
        }
        return Response(AccountCreatedSerializer(body).data, status=201)
