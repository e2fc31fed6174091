"""Provider callbacks: /api/v1/telephony/. No session, no CSRF: each request
is authenticated by the provider's signature: Twilio's, checked against the
URL built from PUBLIC_BASE_URL (never from the request's Host header); the
voice-agent platform's (``--dialer http``), a Standard Webhooks signature
over the raw body with HTTP_DIALER_SECRET.

* 403 for a missing or wrong signature (logged; nothing changes);
* 400 with the API's error shape for a malformed body;
* 200 for everything else, including a call attempt it does not know
  (logged) and duplicate, out-of-order or late events (stored, ignored).

None of them lets a provider payload raise a 500.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.request_validator import RequestValidator

from callcenter import standard_webhooks
from callcenter.api import error_body
from jobs.dialers.base import CallResult, Outcome
from jobs.dialers.twilio import result_for
from jobs.telephony import ProviderEvent, apply_event

logger = logging.getLogger(__name__)

FORM = "application/x-www-form-urlencoded"
MAX_FIELD = 500


def _bad_request(message: str, fields: dict[str, list[str]] | None = None):
    return JsonResponse(error_body("invalid", message, fields), status=400)


def _number(raw: str, name: str) -> float:
    try:
        value = float(raw or 0)
    except ValueError:
        raise ValueError(name) from None
    if not 0 <= value < 10**7:
        raise ValueError(name)
    return value


@csrf_exempt
@require_POST
def twilio_status(request: HttpRequest, token: str) -> HttpResponse:
    """Twilio's status callback for one call attempt (``token``)."""
    if request.content_type != FORM:
        return _bad_request(f"Expected a {FORM} body.")
    try:
        form = request.POST
    except Exception:  # an unreadable body is the sender's fault
        return _bad_request("The body could not be read.")
    url = f"{settings.PUBLIC_BASE_URL}{request.get_full_path()}"
    signature = request.headers.get("X-Twilio-Signature", "")
    if not (
        settings.TWILIO_AUTH_TOKEN
        and signature
        and RequestValidator(settings.TWILIO_AUTH_TOKEN).validate(url, form, signature)
    ):
        logger.warning(
            "twilio callback with a missing or wrong signature",
            extra={
                "action": "telephony.bad_signature",
                "signed": bool(signature),
                "remote_addr": request.META.get("REMOTE_ADDR"),
            },
        )
        return JsonResponse(
            error_body("forbidden", "Missing or invalid X-Twilio-Signature."),
            status=403,
        )
    # PostgreSQL text cannot hold NUL: drop it from everything stored.
    params: dict[str, str] = {
        key.replace("\x00", ""): str(form.get(key, "")).replace("\x00", "")
        for key in list(form)[:60]
    }
    missing = [name for name in ("CallSid", "CallStatus") if not params.get(name)]
    if missing:
        return _bad_request(
            "A Twilio status callback needs CallSid and CallStatus.",
            {name: ["This field is required."] for name in missing},
        )
    status = params["CallStatus"][:32]
    answered_by = params.get("AnsweredBy", "")[:32]
    try:
        duration = _number(params.get("CallDuration", ""), "CallDuration")
    except ValueError as exc:
        return _bad_request(
            "CallDuration must be a number of seconds.",
            {str(exc): ["A number of seconds."]},
        )
    raw = {key[:64]: value[:MAX_FIELD] for key, value in params.items()}
    event = ProviderEvent(
        status=status,
        call_id=params["CallSid"][:64],
        raw=raw,
        answered_by=answered_by,
        result=result_for(status, answered_by=answered_by, duration=duration),
    )
    applied = apply_event(token=token[:64], event=event)
    return JsonResponse({"status": applied})


# --- the voice-agent platform (--dialer http) ------------------------------

AGENT_PROGRESS = ("queued", "initiated", "ringing", "in-progress")
AGENT_ENDED = "ended"
AGENT_STATUSES = (*AGENT_PROGRESS, AGENT_ENDED)
MAX_AGENT_BODY = 64 * 1024
MAX_AGENT_DATA = 8 * 1024
MAX_DEPTH = 16


class _Invalid(ValueError):
    def __init__(self, message: str, fields: dict[str, list[str]] | None = None):
        super().__init__(message)
        self.fields = fields or {}


def _clean(value: Any, depth: int = 0) -> Any:
    """The decoded JSON without NUL characters (PostgreSQL cannot store
    them) and no deeper than MAX_DEPTH."""
    if depth > MAX_DEPTH:
        raise _Invalid(f"The body is nested deeper than {MAX_DEPTH} levels.")
    if isinstance(value, str):
        return _storable(value)
    if isinstance(value, dict):
        return {_storable(str(k)): _clean(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v, depth + 1) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        raise _Invalid("Numbers must be finite (no NaN or Infinity).")
    return value


def _storable(text: str) -> str:
    """Without NUL, and encodable as UTF-8 (JSON may carry lone surrogates)."""
    text = text.replace("\x00", "")
    try:
        text.encode()
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode()
    return text


def _text(data: dict[str, Any], name: str, limit: int) -> str:
    value = data.get(name)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _Invalid(f"{name} must be a string.", {name: ["A string."]})
    return str(value)[:limit]


def _flag(data: dict[str, Any], name: str) -> bool:
    value = data.get(name, False)
    if not isinstance(value, bool):
        raise _Invalid(f"{name} must be true or false.", {name: ["A boolean."]})
    return value


def agent_event(data: dict[str, Any], *, token: str, event_id: str) -> ProviderEvent:
    """The platform's callback body as a ProviderEvent; raises _Invalid
    naming the field (docs/telephony.md#the-callbacks)."""
    attempt_id = _text(data, "attempt_id", 64)
    if attempt_id and attempt_id != token:
        raise _Invalid(
            "attempt_id does not match the callback URL.",
            {"attempt_id": ["The attempt id of the callback URL."]},
        )
    status = _text(data, "status", 32)
    if status not in AGENT_STATUSES:
        raise _Invalid(
            f"status must be one of {', '.join(AGENT_STATUSES)}.",
            {"status": [f"One of {', '.join(AGENT_STATUSES)}."]},
        )
    call_id = _text(data, "call_id", 64)
    answered_by = _text(data, "answered_by", 32)
    raw = {k[:64]: v for k, v in data.items() if k != "received_at"}
    raw["webhook_id"] = _storable(event_id[:200])
    result = None
    if status == AGENT_ENDED:
        outcome = _text(data, "outcome", 32)
        if outcome not in Outcome.ALL:
            choices = ", ".join(sorted(Outcome.ALL))
            raise _Invalid(
                f"An ended call needs an outcome, one of {choices}.",
                {"outcome": [f"One of {choices}."]},
            )
        duration = data.get("duration_seconds", 0) or 0
        if (
            isinstance(duration, bool)
            or not isinstance(duration, int | float)
            or not 0 <= duration < 10**7
        ):
            raise _Invalid(
                "duration_seconds must be a number of seconds.",
                {"duration_seconds": ["A number of seconds."]},
            )
        details: dict[str, Any] = {}
        if answered_by:
            details["answered_by"] = answered_by
        extra = data.get("data")
        if extra is not None:
            if not isinstance(extra, dict):
                raise _Invalid("data must be an object.", {"data": ["An object."]})
            if len(json.dumps(extra)) > MAX_AGENT_DATA:
                raise _Invalid(
                    f"data must be at most {MAX_AGENT_DATA} bytes of JSON.",
                    {"data": [f"At most {MAX_AGENT_DATA} bytes."]},
                )
            details["data"] = extra
        result = CallResult(
            outcome=outcome,
            duration_seconds=float(duration),
            error=_text(data, "error", MAX_FIELD),
            never_connected=_flag(data, "never_connected"),
            opt_out=_flag(data, "opt_out"),
            details=details,
        )
    return ProviderEvent(
        status=status,
        call_id=call_id,
        raw=raw,
        answered_by=answered_by,
        result=result,
    )


@csrf_exempt
@require_POST
def http_dialer_event(request: HttpRequest, token: str) -> HttpResponse:
    """The voice-agent platform's callback for one call attempt (``token``,
    the attempt id): signed per Standard Webhooks with HTTP_DIALER_SECRET."""
    try:
        body = request.body
    except Exception:  # too large for Django, or unreadable: the sender's fault
        return _bad_request("The body could not be read.")
    try:
        event_id = standard_webhooks.verify(
            settings.HTTP_DIALER_SECRET.split(),
            request.headers,
            body,
            tolerance=settings.HTTP_DIALER_TOLERANCE_SECONDS,
        )
    except standard_webhooks.VerificationError as exc:
        logger.warning(
            "voice-agent callback with a missing or wrong signature",
            extra={
                "action": "telephony.bad_signature",
                "dialer": "http",
                "reason": str(exc),
                "remote_addr": request.META.get("REMOTE_ADDR"),
            },
        )
        return JsonResponse(
            error_body("forbidden", "Missing or invalid Standard Webhooks signature."),
            status=403,
        )
    if len(body) > MAX_AGENT_BODY:
        return _bad_request(f"The body must be at most {MAX_AGENT_BODY} bytes.")
    try:
        data = _clean(json.loads(body))
        if not isinstance(data, dict):
            raise _Invalid("The body must be a JSON object.")
        event = agent_event(data, token=token[:64], event_id=event_id)
    except _Invalid as exc:
        return _bad_request(str(exc), exc.fields)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, absurdly deep
        return _bad_request("The body must be a JSON object.")
    applied = apply_event(token=token[:64], event=event)
    return JsonResponse({"status": applied})
