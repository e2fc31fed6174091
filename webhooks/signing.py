"""Webhook signatures: Standard Webhooks (callcenter/standard_webhooks.py).

Every delivery carries ``webhook-id`` (the delivery's id, the same on every
retry: receivers de-duplicate on it), ``webhook-timestamp`` and
``webhook-signature`` (``v1,<base64 HMAC-SHA256>`` of
``"{id}.{timestamp}.{body}"`` keyed by the endpoint's ``whsec_`` secret), so a
receiver verifies them with any Standard Webhooks library. The timestamp is
signed, so a captured request cannot be replayed later: receivers refuse
timestamps more than a few minutes away from their clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from callcenter import standard_webhooks

EVENT_HEADER = "X-Callcenter-Event"
ID_HEADER = standard_webhooks.ID_HEADER
TIMESTAMP_HEADER = standard_webhooks.TIMESTAMP_HEADER
SIGNATURE_HEADER = standard_webhooks.SIGNATURE_HEADER


def delivery_headers(
    *,
    secrets: Iterable[str],
    delivery_id: str,
    event: str,
    body: bytes,
    timestamp: int | None = None,
) -> dict[str, str]:
    """The signature headers of one attempt, signed with every secret given
    (space-separated signatures), and the event's type."""
    return {
        **standard_webhooks.sign_headers(
            secrets, delivery_id, body, timestamp=timestamp
        ),
        EVENT_HEADER: event,
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: int = 300,
    now: float | None = None,
) -> bool:
    """What a receiver does (docs/webhooks.md shows the same with a library)."""
    try:
        standard_webhooks.verify([secret], headers, body, tolerance=tolerance, now=now)
    except standard_webhooks.VerificationError:
        return False
    return True
