"""Provider callbacks: /api/v1/telephony/. No session, no CSRF: each request
is authenticated by the provider's signature, checked against the URL built
from PUBLIC_BASE_URL (never from the request's Host header).

* 403 for a missing or wrong signature (logged; nothing changes);
* 400 with the API's error shape for a malformed body;
* 200 for everything else, including a call attempt it does not know
  (logged) and duplicate, out-of-order or late events (stored, ignored).

None of them lets a provider payload raise a 500.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.request_validator import RequestValidator

from callcenter.api import error_body
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
        and RequestValidator(settings.TWILIO_AUTH_TOKEN).validate(
            url, form, signature
        )
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
