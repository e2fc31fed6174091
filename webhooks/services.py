"""Webhook emission and delivery.

Emission writes one WebhookDelivery per subscribed endpoint and, once that
transaction commits, enqueues a django-q2 task per delivery. The task claims
the delivery with a conditional UPDATE (so two runners never send the same
attempt), posts outside any transaction, then records the attempt and either
finishes the delivery or schedules the next try with exponential backoff.
The periodic ``deliver_due`` task sends what is due: retries, and deliveries
whose task was lost (a cluster that was down, a sender that died).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import Account
from callcenter import metrics
from callcenter.actor import Actor
from callcenter.exceptions import DomainError
from webhooks import signing, transport
from webhooks.models import (
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    generate_secret,
    signing_secrets,
)
from webhooks.urlcheck import resolve_target

logger = logging.getLogger(__name__)

# Of the reply only the status code and this much of its start are kept:
# enough to tell the receiver's error, too little to exfiltrate anything.
EXCERPT_CHARS = 200
TIMED_OUT = "timed out"
USER_AGENT = "callcenter-webhooks/1"


class WebhookEndpointLimitError(DomainError):
    code = "too_many_endpoints"
    status_code = 400


# --- Endpoints ---------------------------------------------------------------


def _log_endpoint(action: str, endpoint: WebhookEndpoint, actor: Actor) -> None:
    logger.info(
        "webhook endpoint %s",
        action,
        extra={
            "action": f"webhook.endpoint_{action}",
            "endpoint": endpoint.pk,
            "account": endpoint.account_id,
            "actor": actor.display or actor.source,
            "source": actor.source,
        },
    )


def webhook_endpoint_create(
    *, account_id: int, actor: Actor, **fields: Any
) -> WebhookEndpoint:
    """Register an endpoint, unless the account already has the most it may
    (WEBHOOK_MAX_ENDPOINTS_PER_ACCOUNT): every endpoint is one more request
    per event for the shared delivery workers.

    The account row is locked so that two concurrent creations cannot both
    see room for one more.
    """
    limit = settings.WEBHOOK_MAX_ENDPOINTS_PER_ACCOUNT
    with transaction.atomic():
        Account.objects.select_for_update(no_key=True).filter(pk=account_id).exists()
        existing = WebhookEndpoint.objects.filter(
            account_id=account_id, deleted_at__isnull=True
        ).count()
        if existing >= limit:
            raise WebhookEndpointLimitError(
                f"An account may have at most {limit} webhook endpoints and this "
                f"one has {existing}. Delete one you no longer use first."
            )
        endpoint = WebhookEndpoint.objects.create(account_id=account_id, **fields)
        _log_endpoint("created", endpoint, actor)
    return endpoint


def webhook_endpoint_rotate_secret(
    *, endpoint: WebhookEndpoint, actor: Actor, previous_secret_hours: int | None = None
) -> WebhookEndpoint:
    """Give the endpoint a new signing secret. The old one keeps signing
    beside it (two signatures per delivery) for ``previous_secret_hours``
    (WEBHOOK_SECRET_ROTATION_GRACE_HOURS by default); 0 stops it at once (a
    leaked secret). The caller shows the new secret once; it is never read
    back."""
    hours = (
        settings.WEBHOOK_SECRET_ROTATION_GRACE_HOURS
        if previous_secret_hours is None
        else previous_secret_hours
    )
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        if hours > 0:
            endpoint.previous_secret = endpoint.secret
            endpoint.previous_secret_expires_at = timezone.now() + timedelta(
                hours=hours
            )
        else:
            endpoint.previous_secret = ""
            endpoint.previous_secret_expires_at = None
        endpoint.secret = generate_secret()
        endpoint.save(
            update_fields=[
                "secret",
                "previous_secret",
                "previous_secret_expires_at",
                "updated_at",
            ]
        )
        _log_endpoint("secret_rotated", endpoint, actor)
    return endpoint


def webhook_endpoint_delete(*, endpoint: WebhookEndpoint, actor: Actor) -> None:
    """Delete the endpoint for its account: it is gone from the API and gets
    no more deliveries (waiting ones fail as "endpoint disabled"). The row
    stays, with its secret wiped, so its delivery history is kept."""
    with transaction.atomic():
        endpoint.deleted_at = timezone.now()
        endpoint.is_active = False
        endpoint.secret = ""
        endpoint.previous_secret = ""
        endpoint.previous_secret_expires_at = None
        endpoint.save(
            update_fields=[
                "deleted_at",
                "is_active",
                "secret",
                "previous_secret",
                "previous_secret_expires_at",
                "updated_at",
            ]
        )
        _log_endpoint("deleted", endpoint, actor)


# --- Emission and delivery ---------------------------------------------------


def backoff_seconds(attempt: int) -> int:
    """Seconds to wait after the given failed attempt: base * 2**(n-1), capped."""
    base = settings.WEBHOOK_RETRY_BASE_SECONDS
    return int(min(base * 2 ** max(attempt - 1, 0), settings.WEBHOOK_RETRY_MAX_SECONDS))


def webhook_emit(
    *,
    account_id: int,
    event_type: str,
    data: dict[str, Any] | Callable[[], dict[str, Any]],
) -> list[int]:
    """Record a delivery for every active endpoint of the account that
    subscribes to the event, and enqueue their tasks after commit.

    ``data`` may be a callable: it is then built only when an endpoint
    subscribes (a worker finishes many jobs whose events nobody wants).
    """
    return webhook_emit_many(account_id=account_id, emitted=[(event_type, data)])


def webhook_emit_many(
    *,
    account_id: int,
    emitted: list[tuple[str, dict[str, Any] | Callable[[], dict[str, Any]]]],
) -> list[int]:
    """``webhook_emit`` for several events of one account, with one lookup of
    its endpoints: a worker that records the calls of one round emits them
    together."""
    endpoints = list(
        WebhookEndpoint.objects.filter(
            account_id=account_id, is_active=True, deleted_at__isnull=True
        ).order_by("pk")
    )
    wanted = [
        (event_type, data, [e for e in endpoints if e.subscribes(event_type)])
        for event_type, data in emitted
    ]
    wanted = [item for item in wanted if item[2]]
    if not wanted:
        return []
    now = timezone.now()
    created: list[int] = []
    with transaction.atomic():
        for event_type, data, subscribers in wanted:
            if callable(data):
                data = data()
            ids: list[int] = []
            for endpoint in subscribers:
                delivery = WebhookDelivery(
                    endpoint=endpoint, event=event_type, next_attempt_at=now, payload={}
                )
                # The payload carries its own delivery id so receivers can
                # de-duplicate a retried request.
                delivery.payload = json.loads(
                    json.dumps(
                        {
                            "id": str(delivery.delivery_id),
                            "type": event_type,
                            "created_at": now,
                            "data": data,
                        },
                        cls=DjangoJSONEncoder,
                    )
                )
                delivery.save()
                ids.append(delivery.pk)
            created += ids
            logger.info(
                "webhook emitted",
                extra={
                    "action": "webhook.emit",
                    "event": event_type,
                    "deliveries": ids,
                },
            )
        transaction.on_commit(lambda: _enqueue(created))
    return created


def _enqueue(delivery_pks: list[int]) -> None:
    from django_q.tasks import async_task

    # Their own queue: a slow endpoint holds a webhook worker, never one of
    # the maintenance cluster's (settings.Q_CLUSTER).
    for pk in delivery_pks:
        async_task(
            "webhooks.tasks.deliver",
            pk,
            task_name=f"webhook-delivery-{pk}",
            cluster=settings.Q_WEBHOOKS_CLUSTER,
        )


def _claim(delivery_pk: int) -> WebhookDelivery | None:
    now = timezone.now()
    lease = now + timedelta(seconds=settings.WEBHOOK_TIMEOUT_SECONDS + 30)
    claimed = WebhookDelivery.objects.filter(
        pk=delivery_pk,
        status=WebhookDelivery.Status.PENDING,
        next_attempt_at__lte=now,
    ).update(attempts=F("attempts") + 1, next_attempt_at=lease, updated_at=now)
    if not claimed:
        return None
    return WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_pk)


def _post(delivery: WebhookDelivery) -> tuple[int | None, str, str]:
    """One HTTP attempt: (status code or None, error, response excerpt).

    The host is resolved once and checked; the request goes to that address
    (see webhooks/transport.py). A refused request records only why.
    """
    endpoint = delivery.endpoint
    if not endpoint.is_active or endpoint.deleted_at is not None:
        return None, "endpoint disabled", ""
    try:
        target = resolve_target(endpoint.url)
    except ValidationError as exc:
        return None, f"refused: {' '.join(exc.messages)}", ""
    body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        **signing.delivery_headers(
            secrets=signing_secrets(endpoint, timezone.now()),
            delivery_id=str(delivery.delivery_id),
            event=delivery.event,
            body=body,
        ),
    }
    try:
        reply = transport.post(
            target,
            body=body,
            headers=headers,
            deadline=settings.WEBHOOK_TIMEOUT_SECONDS,
        )
    except transport.DeliveryTimeout as exc:
        return None, f"{TIMED_OUT}: {exc}", ""
    except transport.DeliveryError as exc:
        return None, str(exc), ""
    excerpt = reply.head.decode("utf-8", errors="replace")[:EXCERPT_CHARS]
    if 200 <= reply.status_code < 300:
        return reply.status_code, "", excerpt
    return reply.status_code, f"HTTP {reply.status_code}", excerpt


def webhook_deliver(*, delivery_pk: int) -> str | None:
    """Make one attempt if the delivery is due. Returns its new status, or
    None when there was nothing to do (not due, finished, or taken)."""
    delivery = _claim(delivery_pk)
    if delivery is None:
        return None
    started = time.monotonic()
    status_code, error, excerpt = _post(delivery)
    duration_ms = int((time.monotonic() - started) * 1000)
    permanent = error.startswith(("refused:", "endpoint disabled"))
    now = timezone.now()
    with transaction.atomic():
        WebhookAttempt.objects.create(
            delivery=delivery,
            number=delivery.attempts,
            status_code=status_code,
            error=error,
            response_excerpt=excerpt,
            duration_ms=duration_ms,
        )
        fields: dict[str, Any] = {
            "last_status_code": status_code,
            "last_error": error,
            "response_excerpt": excerpt,
            "updated_at": now,
        }
        if not error:
            fields.update(
                status=WebhookDelivery.Status.SUCCEEDED,
                delivered_at=now,
                next_attempt_at=None,
            )
        elif permanent or delivery.attempts >= settings.WEBHOOK_MAX_ATTEMPTS:
            fields.update(status=WebhookDelivery.Status.FAILED, next_attempt_at=None)
        else:
            fields["next_attempt_at"] = now + timedelta(
                seconds=backoff_seconds(delivery.attempts)
            )
        # Only the holder of this attempt may settle it.
        WebhookDelivery.objects.filter(
            pk=delivery.pk,
            attempts=delivery.attempts,
            status=WebhookDelivery.Status.PENDING,
        ).update(**fields)
    new_status = fields.get("status", WebhookDelivery.Status.PENDING)
    metrics.WEBHOOK_DELIVERIES.labels(
        result="retry" if new_status == WebhookDelivery.Status.PENDING else new_status
    ).inc()
    log = logger.info if not error else logger.warning
    log(
        "webhook attempt",
        extra={
            "action": "webhook.attempt",
            "delivery": str(delivery.delivery_id),
            "event": delivery.event,
            "attempt": delivery.attempts,
            "status_code": status_code,
            "error": error or "-",
            "outcome": new_status,
        },
    )
    return str(new_status)


def webhooks_deliver_due(*, limit: int = 200, budget_seconds: float = 40.0) -> int:
    """Attempt the deliveries that are due, oldest first, for at most
    ``budget_seconds`` (below the cluster's task timeout, so a row of slow
    endpoints cannot get the task killed halfway). What is left waits for the
    next run. Returns how many were attempted."""
    due = list(
        WebhookDelivery.objects.filter(
            status=WebhookDelivery.Status.PENDING,
            next_attempt_at__lte=timezone.now(),
        )
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
    attempted = 0
    stop_at = time.monotonic() + budget_seconds
    for pk in due:
        if time.monotonic() >= stop_at:
            break
        if webhook_deliver(delivery_pk=pk) is not None:
            attempted += 1
    return attempted


def webhook_delivery_retry(*, delivery: WebhookDelivery) -> bool:
    """Attempt a failed (or waiting) delivery once more, now. A failed one gets
    that single attempt; its earlier attempts stay in the log."""
    with transaction.atomic():
        updated = WebhookDelivery.objects.filter(
            pk=delivery.pk,
            status__in=[WebhookDelivery.Status.FAILED, WebhookDelivery.Status.PENDING],
        ).update(
            status=WebhookDelivery.Status.PENDING,
            next_attempt_at=timezone.now(),
            updated_at=timezone.now(),
        )
        if updated:
            transaction.on_commit(lambda: _enqueue([delivery.pk]))
    return bool(updated)
