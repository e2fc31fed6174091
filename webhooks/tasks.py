"""django-q2 entry points. Thin: they call the services."""

from __future__ import annotations

from webhooks.services import webhook_deliver, webhooks_deliver_due


def deliver(delivery_pk: int) -> str | None:
    return webhook_deliver(delivery_pk=delivery_pk)


def deliver_due() -> int:
    return webhooks_deliver_due()
