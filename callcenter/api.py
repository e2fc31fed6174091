"""REST API plumbing shared by every endpoint of /api/v1/.

- One error shape for every failure, whoever raises it (DRF, Django, a
  service's DomainError, an unexpected crash):
  ``{"error": {"code": "...", "message": "...", "fields": {...}}}``.
- Tenancy lives one layer up, in ``accounts.api`` (``HasAccount``, the
  account-scoped views): this module imports no app.
- Strict input fields: JSON booleans and integers only, and unknown body
  fields are an error instead of being silently ignored.
- Pagination, the per-token throttle, the schema hook that hides the
  trailing-slash duplicates of every route. The router that serves both
  slash forms is ``callcenter.routers`` (it imports ``rest_framework.views``,
  which this module, named in the DRF settings, must not).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import Http404, JsonResponse
from django.urls import path
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiResponse
from rest_framework import (
    exceptions,
    parsers,
    serializers,
    throttling,
)
from rest_framework.metadata import SimpleMetadata
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response

from callcenter.exceptions import DomainError

logger = logging.getLogger(__name__)

API_PREFIX = "/api/"


# --- Errors -----------------------------------------------------------------


def error_body(
    code: str, message: str, fields: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "error": {"code": code, "message": message, "fields": fields or {}, **extra}
    }


class ApiError(exceptions.APIException):
    """An API error with a chosen status, code and optional extra members."""

    def __init__(
        self,
        message: str,
        *,
        code: str,
        status_code: int = 400,
        fields: dict[str, Any] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail=message, code=code)
        self.status_code = status_code
        self.error_code = code
        self.fields = fields or {}
        self.extra = extra


_DRF_CODES = {
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
    exceptions.ParseError: "parse_error",
}


def _first_message(detail: Any) -> str | None:
    if isinstance(detail, dict):
        for value in detail.values():
            found = _first_message(value)
            if found:
                return found
    elif isinstance(detail, list):
        for value in detail:
            found = _first_message(value)
            if found:
                return found
    elif detail:
        return str(detail)
    return None


def _suspicious(exc: SuspiciousOperation) -> ApiError:
    """Django's refusals of a malformed or oversized request: a 4xx, as
    Django itself would answer outside the API."""
    if isinstance(exc, RequestDataTooBig):
        return ApiError(
            _("The request body is too large."), code="too_large", status_code=413
        )
    return ApiError(_("The request is malformed."), code="bad_request")


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's EXCEPTION_HANDLER: every handled error leaves in one shape."""
    # Imported here: rest_framework.views reads DEFAULT_PERMISSION_CLASSES
    # (this module) while it is being imported.
    from rest_framework.views import exception_handler as drf_exception_handler

    if isinstance(exc, DomainError):
        exc = ApiError(exc.message, code=exc.code, status_code=exc.status_code)
    elif isinstance(exc, SuspiciousOperation):
        exc = _suspicious(exc)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(*exc.args)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a crash: ApiErrorMiddleware answers the JSON 500
    if isinstance(exc, ApiError):
        response.data = error_body(
            exc.error_code, str(exc.detail), exc.fields, **exc.extra
        )
    elif isinstance(exc, exceptions.ValidationError):
        detail = exc.detail
        fields = detail if isinstance(detail, dict) else {"non_field_errors": detail}
        first = _first_message(detail) or "Invalid input."
        response.data = error_body(
            "invalid",
            _("The request is not valid: %(reason)s") % {"reason": first},
            fields,
        )
    else:
        code = next(
            (c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)),
            getattr(exc, "default_code", "error"),
        )
        message = _first_message(getattr(exc, "detail", None)) or str(exc)
        response.data = error_body(code, message)
    return response


class ApiErrorMiddleware:
    """JSON instead of HTML for errors that never reach DRF, under /api/ only:
    Django's 404 for an unknown path and any unhandled exception (500)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            request.path.startswith(API_PREFIX)
            and response.status_code == 404
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            return JsonResponse(
                error_body("not_found", _("No API endpoint matches this URL.")),
                status=404,
            )
        return response

    def process_exception(self, request, exception):
        if not request.path.startswith(API_PREFIX):
            return None
        if isinstance(exception, SuspiciousOperation):
            error = _suspicious(exception)
            return JsonResponse(
                error_body(error.error_code, str(error.detail)),
                status=error.status_code,
            )
        logger.exception(
            "api unhandled error",
            extra={"action": "api.error", "path": request.path},
        )
        return JsonResponse(
            error_body("server_error", _("Internal server error.")), status=500
        )


# --- Throttling -------------------------------------------------------------


class ApiRateThrottle(throttling.UserRateThrottle):
    """Per user, and so per token (a user has one token). The rate is read at
    request time from settings.API_THROTTLE_RATE; empty disables it."""

    scope = "api"

    def get_rate(self) -> str | None:
        return settings.API_THROTTLE_RATE or None


# --- Parsing -----------------------------------------------------------------


def body_too_large(limit: int) -> ApiError:
    return ApiError(
        f"The request body is larger than {limit} bytes (IMPORT_MAX_BYTES).",
        code="too_large",
        status_code=413,
    )


def refuse_large_body(parser_context: dict[str, Any] | None) -> None:
    """413 before a byte of the body is read, when its declared length is
    over IMPORT_MAX_BYTES. Under WSGI the declared length also bounds what
    can be read; the upload parsers count the bytes as well."""
    request = (parser_context or {}).get("request")
    if request is None:
        return
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > settings.IMPORT_MAX_BYTES:
        raise body_too_large(settings.IMPORT_MAX_BYTES)


class JSONParser(parsers.JSONParser):
    """DRF's parser, plus a 413 for a body over IMPORT_MAX_BYTES and a 400 for
    JSON nested too deeply for Python's decoder (it raises RecursionError,
    which DRF would let become a 500)."""

    def parse(self, stream, media_type=None, parser_context=None):
        refuse_large_body(parser_context)
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError(
                "JSON parse error - nested too deeply."
            ) from None


# --- OPTIONS -----------------------------------------------------------------


class ApiMetadata(SimpleMetadata):
    """OPTIONS without DRF's per-action introspection, which calls
    get_object() on views that look objects up their own way. The OpenAPI
    schema documents the bodies instead."""

    def determine_metadata(self, request, view) -> dict[str, Any]:
        metadata = super().determine_metadata(request, view)
        metadata.pop("actions", None)
        metadata["schema"] = "/api/v1/schema"
        return metadata

    def determine_actions(self, request, view) -> dict[str, Any]:
        return {}


# --- Pagination -------------------------------------------------------------


class ApiPagination(PageNumberPagination):
    page_size_query_param = "page_size"

    @property
    def page_size(self) -> int:  # type: ignore[override]
        return settings.API_PAGE_SIZE

    @property
    def max_page_size(self) -> int:  # type: ignore[override]
        return settings.API_MAX_PAGE_SIZE


# --- Strict fields ----------------------------------------------------------


class StrictBooleanField(serializers.BooleanField):
    """Only JSON true/false. DRF's BooleanField also takes "no", "off", 0..."""

    default_error_messages = {"invalid": "Must be a JSON boolean: true or false."}

    def to_internal_value(self, data: Any) -> bool:
        if data is True or data is False:
            return data
        self.fail("invalid")
        raise AssertionError  # unreachable: fail() raises


class StrictIntegerField(serializers.IntegerField):
    """Only JSON integers: no strings, floats or booleans."""

    default_error_messages = {"invalid": "Must be a JSON integer."}

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return data


class StrictCharField(serializers.CharField):
    """Only JSON strings: DRF's CharField would turn 123 into "123"."""

    default_error_messages = {"invalid": "Must be a JSON string."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


def priority_field(**kwargs: Any) -> StrictIntegerField:
    return StrictIntegerField(
        min_value=-1000,
        max_value=1000,
        help_text="Higher runs first; from -1000 to 1000.",
        **kwargs,
    )


class StrictSerializer(serializers.Serializer):
    """Rejects body fields it does not know instead of dropping them."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {key: ["Unknown field."] for key in unknown}
                )
        return super().to_internal_value(data)


def parse_strict_bool(name: str, raw: str | None, default: bool = False) -> bool:
    """Query-string booleans: exactly `true` or `false` (any case)."""
    if raw is None:
        return default
    value = raw.strip().lower()
    if value == "true":
        return True
    if value == "false":
        return False
    raise ApiError(
        _("Query parameter %(name)s must be true or false.") % {"name": name},
        code="invalid",
        fields={name: [_("Must be true or false.")]},
    )


# --- Schema helpers ---------------------------------------------------------


class RowErrorSerializer(serializers.Serializer):
    row = serializers.IntegerField(
        help_text="1-based: the Nth JSON item, or the CSV line (header is line 1)."
    )
    phone_number = serializers.CharField(allow_blank=True, allow_null=True)
    errors = serializers.ListField(child=serializers.CharField())  # type: ignore[assignment]


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    fields = serializers.DictField(  # type: ignore[assignment]
        child=serializers.JSONField(),
        help_text="Field name -> list of messages (nested for lists and objects).",
    )
    rows = RowErrorSerializer(
        many=True, required=False, help_text="Job import only: every bad row."
    )


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


_ERROR_TEXT = {
    400: "Invalid input (field errors in error.fields).",
    401: "Missing or invalid credentials.",
    403: "No account, read-only role, or CSRF failure.",
    404: "Not found, or belongs to another account.",
    405: "Method not allowed.",
    409: "Not allowed in the current state.",
    413: "Too many rows, or a body over IMPORT_MAX_BYTES.",
    415: "Unsupported media type.",
    422: "Idempotency-Key reused with a different request.",
    429: "Throttled; see Retry-After.",
}


def error_responses(*extra: int) -> dict[int, OpenApiResponse]:
    codes = sorted({400, 401, 403, 404, 405, 415, 429, *extra})
    return {
        c: OpenApiResponse(response=ErrorSerializer, description=_ERROR_TEXT[c])
        for c in codes
    }


# --- URLs -------------------------------------------------------------------


def both_slashes(route: str, view, name: str) -> list:
    """The route with and without a trailing slash: the original system's
    curl examples have none, and clients that add one must not get a redirect
    (a redirected POST or PATCH loses its body)."""
    return [path(route, view, name=name), path(f"{route}/", view)]


def drop_trailing_slash_duplicates(endpoints: list, **kwargs: Any) -> list:
    """drf-spectacular preprocessing hook: document each route once."""
    return [e for e in endpoints if not e[0].endswith("/")]


PUBLIC_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
