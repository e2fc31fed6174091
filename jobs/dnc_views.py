"""/api/v1/account/dnc: the account's do-not-call list."""

from __future__ import annotations

import csv
import io
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, status
from rest_framework.response import Response

from accounts.api import AccountScopedView
from callcenter.api import ApiError, JSONParser, error_responses
from jobs import dnc
from jobs.models import DncEntry, DncSource
from jobs.serializers import DncAddedSerializer, DncEntrySerializer
from jobs.views import CSVBodyParser, UploadParser

MAX_NUMBERS = 100_000


def _numbers_from_json(data: Any) -> list[Any]:
    """A list of numbers, a list of {"phone_number": …}, or
    {"numbers": [...]}."""
    if isinstance(data, dict) and set(data) == {"numbers"}:
        data = data["numbers"]
    if not isinstance(data, list):
        raise ApiError(
            'Send a JSON list of numbers, or {"numbers": [...]}.',
            code="invalid",
            fields={"numbers": ["Expected a list."]},
        )
    values = []
    for item in data:
        if isinstance(item, dict) and set(item) == {"phone_number"}:
            item = item["phone_number"]
        values.append(item)
    return values


def _numbers_from_csv(upload: Any) -> tuple[list[Any], int]:
    """The phone_number column (or the only column); rows are numbered by
    line, the header being line 1."""
    try:
        text = upload.read().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ApiError(
            "The CSV file is not UTF-8.", code="invalid_csv", status_code=400
        ) from None
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows:
        raise ApiError("The CSV file is empty.", code="invalid_csv")
    header = [h.strip() for h in rows[0]]
    if "phone_number" in header:
        column = header.index("phone_number")
        body, first = rows[1:], 2
    elif len(header) == 1:
        column, body, first = 0, rows, 1  # a bare list of numbers
    else:
        raise ApiError(
            "The CSV needs a phone_number column.",
            code="invalid_csv",
            fields={"phone_number": ["Missing column."]},
        )
    return [row[column] if len(row) > column else "" for row in body], first


class AccountDncView(AccountScopedView):
    """GET: the account's list, newest first (paginated). POST: add numbers,
    as JSON or a CSV upload; all or nothing."""

    parser_classes = [JSONParser, CSVBodyParser, UploadParser]
    serializer_class = DncEntrySerializer

    @extend_schema(
        operation_id="account_dnc_list",
        parameters=[
            OpenApiParameter(
                "phone", OpenApiTypes.STR, description="Only this number (E.164)."
            )
        ],
        responses={200: DncEntrySerializer(many=True), **error_responses()},
    )
    def get(self, request):
        entries = DncEntry.objects.filter(account=self.account).order_by(
            "-created_at", "-id"
        )
        phone = request.query_params.get("phone")
        if phone:
            e164 = dnc.normalize(phone)
            if e164 is None:
                raise ApiError(
                    "Not a valid phone number.",
                    code="invalid",
                    fields={"phone": ["Not a valid phone number."]},
                )
            entries = entries.filter(phone_number=e164)
        page = self.paginate_queryset(entries)
        return self.get_paginated_response(DncEntrySerializer(page, many=True).data)

    @extend_schema(
        operation_id="account_dnc_add",
        request={
            "application/json": {"type": "array", "items": {"type": "string"}},
            "text/csv": {"type": "string"},
            "multipart/form-data": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}},
            },
        },
        responses={201: DncAddedSerializer, **error_responses()},
        description="Add numbers to the account's do-not-call list: a JSON list "
        'of numbers (or {"numbers": [...]}), or a CSV with a phone_number '
        "column. One invalid number refuses the whole request (400, naming "
        "each bad row); numbers already listed are counted in `already`.",
    )
    def post(self, request):
        upload = request.FILES.get("file")
        if upload is not None:
            values, first = _numbers_from_csv(upload)
        else:
            values, first = _numbers_from_json(request.data), 1
        if len(values) > MAX_NUMBERS:
            raise ApiError(
                f"At most {MAX_NUMBERS} numbers per request.", code="too_many_rows"
            )
        if not values:
            raise ApiError(
                "No numbers given.",
                code="invalid",
                fields={"numbers": ["At least one number."]},
            )
        try:
            numbers = dnc.normalize_all(values, first_row=first)
        except dnc.DncInputError as exc:
            n = len(exc.errors)
            raise ApiError(
                f"{n} row{'s are' if n != 1 else ' is'} invalid; nothing was added.",
                code="invalid_rows",
                rows=exc.errors,
            ) from None
        added = dnc.dnc_add(
            account=self.account,
            numbers=numbers,
            actor=self.actor(),
            source=DncSource.API,
        )
        return Response(
            {"added": added.added, "already": added.already},
            status=status.HTTP_201_CREATED,
        )


class AccountDncNumberView(AccountScopedView):
    """DELETE /account/dnc/{e164}: take a number off the account's list."""

    serializer_class = DncEntrySerializer

    @extend_schema(
        operation_id="account_dnc_remove",
        parameters=[
            OpenApiParameter(
                "e164",
                OpenApiTypes.STR,
                OpenApiParameter.PATH,
                description="The number, e.g. +14155550100 (%2B for the +).",
            )
        ],
        responses={204: None, **error_responses()},
    )
    def delete(self, request, e164: str):
        number = dnc.normalize(e164)
        if number is None:
            raise ApiError(
                "Not a valid phone number.",
                code="invalid",
                fields={"e164": ["Not a valid phone number."]},
            )
        if not dnc.dnc_remove(
            account=self.account, phone_number=number, actor=self.actor()
        ):
            raise exceptions.NotFound(f"{number} is not on the account's list.")
        return Response(status=status.HTTP_204_NO_CONTENT)
