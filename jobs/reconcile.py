"""Reconciliation of call attempts whose final callback never came.

A provider's last status callback can be lost (an outage of the web
process, a network fault past Twilio's retries). The periodic task looks at
the attempts of a provider dialer with no terminal status once the ring
timeout, the time limit and a margin have passed since they started, asks
the provider about each call, and applies its answer through the same
``telephony.apply_event`` a callback uses (docs/telephony.md):

* a call that ended: its outcome, as its final callback would have given;
* a call the provider has no record of: it never connected, so the job may
  be retried (an ``error`` that never connected);
* a call still running: left alone.

The voice-agent platform (``--dialer http``) has no lookup API of ours to
ask. Its attempts with no terminal event HTTP_DIALER_MAX_CALL_SECONDS plus
the margin after they started are ended as an ``error`` that may have
connected: the job fails, never dialled again blindly, and the worker's
call slot is freed.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from jobs.dialers.base import CallResult, Outcome
from jobs.models import CallAttempt
from jobs.telephony import Applied, ProviderEvent, apply_event

logger = logging.getLogger(__name__)

NOT_FOUND = "not-found"
NO_FINAL_CALLBACK = "no-final-callback"


def overdue_after() -> timedelta:
    """How long after its start an attempt with no final status is overdue."""
    return timedelta(
        seconds=settings.TWILIO_RING_TIMEOUT_SECONDS
        + settings.TWILIO_TIME_LIMIT_SECONDS
        + settings.CALL_RECONCILE_MARGIN_SECONDS
    )


def reconcile_attempts(
    *, dialer=None, now: datetime | None = None, limit: int = 200
) -> dict[str, int]:
    """Resolve overdue open attempts of ``dialer`` (Twilio by default)."""
    from jobs.dialers.twilio import RUNNING, TwilioDialer, result_for

    if dialer is None:
        dialer = TwilioDialer.from_settings()
    cutoff = (now or timezone.now()) - overdue_after()
    overdue = list(
        CallAttempt.objects.filter(
            dialer=dialer.name, ended_at__isnull=True, started_at__lt=cutoff
        )
        .exclude(provider_call_id="")
        .order_by("started_at")
        .values_list("token", "provider_call_id")[:limit]
    )
    counts = {"resolved": 0, "running": 0, "not_found": 0}
    for token, call_id in overdue:
        call = dialer.fetch(call_id)  # outside any transaction: may be slow
        if call is None:
            event = ProviderEvent(
                status=NOT_FOUND,
                call_id=call_id,
                raw={"source": "reconciliation", "found": False},
                result=CallResult(
                    outcome=Outcome.ERROR,
                    error="the provider has no record of the call",
                    never_connected=True,
                ),
            )
            counts["not_found"] += 1
        elif call["status"] in RUNNING:
            counts["running"] += 1
            continue
        else:
            answered_by = call.get("answered_by") or ""
            event = ProviderEvent(
                status=call["status"],
                call_id=call_id,
                raw={"source": "reconciliation", **call},
                answered_by=answered_by,
                result=result_for(
                    call["status"],
                    answered_by=answered_by,
                    duration=float(call.get("duration") or 0),
                ),
            )
        if apply_event(token=token, event=event) == Applied.ENDED:
            counts["resolved"] += 1
    logger.info(
        "call attempts reconciled",
        extra={"action": "telephony.reconciled", "overdue": len(overdue), **counts},
    )
    return counts


def http_overdue_after() -> timedelta:
    return timedelta(
        seconds=settings.HTTP_DIALER_MAX_CALL_SECONDS
        + settings.CALL_RECONCILE_MARGIN_SECONDS
    )


def reconcile_http_attempts(
    *, now: datetime | None = None, limit: int = 200
) -> dict[str, int]:
    """End the voice-agent platform's overdue open attempts (no last callback)."""
    cutoff = (now or timezone.now()) - http_overdue_after()
    overdue = list(
        CallAttempt.objects.filter(
            dialer="http", ended_at__isnull=True, started_at__lt=cutoff
        )
        .order_by("started_at")
        .values_list("token", "provider_call_id")[:limit]
    )
    resolved = 0
    for token, call_id in overdue:
        event = ProviderEvent(
            status=NO_FINAL_CALLBACK,
            call_id=call_id,
            raw={"source": "reconciliation"},
            result=CallResult(
                outcome=Outcome.ERROR,
                error="no final callback from the voice-agent platform",
            ),
        )
        if apply_event(token=token, event=event) == Applied.ENDED:
            resolved += 1
    logger.info(
        "voice-agent call attempts reconciled",
        extra={
            "action": "telephony.reconciled",
            "dialer": "http",
            "overdue": len(overdue),
            "resolved": resolved,
        },
    )
    return {"resolved": resolved}
