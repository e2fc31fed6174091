from __future__ import annotations

import uuid
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

from callcenter import standard_webhooks
from webhooks.events import ALL_EVENTS, default_event_types
from webhooks.urlcheck import validate_webhook_url


def generate_secret() -> str:
    """``whsec_`` + base64 of 32 random bytes: a Standard Webhooks secret."""
    return standard_webhooks.generate_secret()


def signing_secrets(endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    """The secrets a delivery is signed with: the current one, and the one
    before the last rotation while it has not expired."""
    secrets = [endpoint.secret]
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret and expires is not None and expires > now:
        secrets.append(endpoint.previous_secret)
    return secrets


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
        "accounts.Account",
        on_delete=models.CASCADE,
        related_name="webhook_endpoints",
        verbose_name=_("account"),
    )
    url = models.URLField(
        max_length=500, validators=[validate_webhook_url], verbose_name=_("url")
    )
    secret = models.CharField(
        max_length=128,
        default=generate_secret,
        help_text=_("Signing secret of the Standard Webhooks signature."),
        verbose_name=_("secret"),
    )
    # The secret before the last rotation: deliveries are signed with both
    # (two signatures in the header) until it expires, so a receiver can
    # switch to the new one without refusing anything meanwhile.
    previous_secret = models.CharField(
        max_length=128, blank=True, default="", verbose_name=_("previous secret")
    )
    previous_secret_expires_at = models.DateTimeField(
        null=True, blank=True, verbose_name=_("previous secret expires at")
    )
    event_types = models.JSONField(
        default=default_event_types,
        validators=[validate_event_types],
        help_text=_("Event types to deliver. Job events are sent only if listed."),
        verbose_name=_("event types"),
    )
    description = models.CharField(
        max_length=200, blank=True, default="", verbose_name=_("description")
    )
    is_active = models.BooleanField(default=True, verbose_name=_("is active"))
    # Deleting an endpoint hides it and stops its deliveries; the row stays so
    # that its delivery history (which points at it) is kept.
    deleted_at = models.DateTimeField(
        null=True, blank=True, verbose_name=_("deleted at")
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    class Meta:
        verbose_name = _("webhook endpoint")
        verbose_name_plural = _("webhook endpoints")
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

    delivery_id = models.UUIDField(
        default=uuid.uuid4, unique=True, editable=False, verbose_name=_("delivery id")
    )
    # PROTECT: deliveries are history; an endpoint is deleted by marking it
    # (webhook_endpoint_delete), never by removing the row under them.
    endpoint = models.ForeignKey(
        WebhookEndpoint,
        on_delete=models.PROTECT,
        related_name="deliveries",
        verbose_name=_("endpoint"),
    )
    event = models.CharField(max_length=64, verbose_name=_("event"))
    payload = models.JSONField(verbose_name=_("payload"))
    status = models.CharField(
        max_length=16,
        choices=Status.choices,
        default=Status.PENDING,
        verbose_name=_("status"),
    )
    attempts = models.PositiveIntegerField(default=0, verbose_name=_("attempts"))
    # While an attempt runs this is its lease: a sender that dies mid-request
    # leaves the delivery due again once it passes.
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, verbose_name=_("next attempt at")
    )
    last_status_code = models.PositiveIntegerField(
        null=True, blank=True, verbose_name=_("last status code")
    )
    last_error = models.TextField(blank=True, default="", verbose_name=_("last error"))
    response_excerpt = models.TextField(
        blank=True, default="", verbose_name=_("response excerpt")
    )
    delivered_at = models.DateTimeField(
        null=True, blank=True, verbose_name=_("delivered at")
    )
    created_at = models.DateTimeField(
        auto_now_add=True, db_index=True, verbose_name=_("created at")
    )
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    class Meta:
        verbose_name = _("webhook delivery")
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
        WebhookDelivery,
        on_delete=models.CASCADE,
        related_name="attempt_log",
        verbose_name=_("delivery"),
    )
    number = models.PositiveIntegerField(verbose_name=_("number"))
    status_code = models.PositiveIntegerField(
        null=True, blank=True, verbose_name=_("status code")
    )
    error = models.TextField(blank=True, default="", verbose_name=_("error"))
    response_excerpt = models.TextField(
        blank=True, default="", verbose_name=_("response excerpt")
    )
    duration_ms = models.PositiveIntegerField(default=0, verbose_name=_("duration ms"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))

    class Meta:
        verbose_name = _("webhook attempt")
        verbose_name_plural = _("webhook attempts")
        ordering = ["delivery", "number"]

    def __str__(self) -> str:
        outcome = self.status_code or self.error[:40]
        return f"attempt {self.number}: {outcome}"
