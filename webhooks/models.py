from __future__ import annotations

import secrets
import uuid

from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

from webhooks.events import ALL_EVENTS, default_event_types
from webhooks.urlcheck import validate_webhook_url


def generate_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def validate_event_types(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError("Event types must be a list of strings.")
    unknown = sorted(set(value) - set(ALL_EVENTS))
    if unknown:
        raise ValidationError(
            f"Unknown event types: {', '.join(unknown)}. "
            f"Known: {', '.join(ALL_EVENTS)}."
        )


class WebhookEndpoint(models.Model):
    """Where an account wants to be told about its batches (and, opt-in, calls)."""

    account = models.ForeignKey(
        "accounts.Account", on_delete=models.CASCADE, related_name="webhook_endpoints"
    )
    url = models.URLField(max_length=500, validators=[validate_webhook_url])
    secret = models.CharField(
        max_length=128,
        default=generate_secret,
        help_text="Shared secret for the X-Callcenter-Signature HMAC.",
    )
    event_types = models.JSONField(
        default=default_event_types,
        validators=[validate_event_types],
        help_text="Event types to deliver. Job events are sent only if listed.",
    )
    description = models.CharField(max_length=200, blank=True, default="")
    is_active = models.BooleanField(default=True)
    # Deleting an endpoint hides it and stops its deliveries; the row stays so
    # that its delivery history (which points at it) is kept.
    deleted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["account", "id"]

    def __str__(self) -> str:
        return f"{self.account} → {self.url}"

    def subscribes(self, event_type: str) -> bool:
        # The default list holds batch events only, so job events (one per
        # call) reach an endpoint only when someone named them.
        return event_type in (self.event_types or [])


class WebhookDelivery(models.Model):
    """One event for one endpoint, retried with backoff until it succeeds or
    the attempt budget is spent."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed (gave up)")

    delivery_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # PROTECT: deliveries are history; an endpoint is deleted by marking it
    # (webhook_endpoint_delete), never by removing the row under them.
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.PROTECT, related_name="deliveries"
    )
    event = models.CharField(max_length=64)
    payload = models.JSONField()
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    # While an attempt runs this is its lease: a sender that dies mid-request
    # leaves the delivery due again once it passes.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    response_excerpt = models.TextField(blank=True, default="")
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = _("webhook deliveries")
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="webhook_due_idx",
                condition=models.Q(status="pending"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event} → {self.endpoint.url} ({self.status})"


class WebhookAttempt(models.Model):
    """Every HTTP attempt of a delivery, kept for the admin and for support."""

    delivery = models.ForeignKey(
        WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log"
    )
    number = models.PositiveIntegerField()
    status_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    response_excerpt = models.TextField(blank=True, default="")
    duration_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["delivery", "number"]

    def __str__(self) -> str:
        outcome = self.status_code or self.error[:40]
        return f"attempt {self.number}: {outcome}"
