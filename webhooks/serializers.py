from __future__ import annotations

from rest_framework import serializers

from callcenter.api import StrictSerializer
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint


class WebhookEndpointSerializer(StrictSerializer, serializers.ModelSerializer):
    class Meta:
        model = WebhookEndpoint
        fields = [
            "id",
            "url",
            "event_types",
            "description",
            "is_active",
            "previous_secret_expires_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "id",
            "previous_secret_expires_at",
            "created_at",
            "updated_at",
        ]


class WebhookEndpointWithSecretSerializer(WebhookEndpointSerializer):
    """The answer to a creation or a secret rotation, and only those: the
    secret is shown once, to the member who asked for it. It is generated;
    it cannot be chosen (a weak one would be the easy path)."""

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "secret"]
        read_only_fields = [*WebhookEndpointSerializer.Meta.read_only_fields, "secret"]


class RotateSecretSerializer(StrictSerializer):
    previous_secret_hours = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=168,
        help_text=(
            "How long the old secret keeps signing beside the new one "
            "(WEBHOOK_SECRET_ROTATION_GRACE_HOURS by default); 0 stops it at "
            "once, for a leaked secret."
        ),
    )


class WebhookAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookAttempt
        fields = [
            "number",
            "status_code",
            "error",
            "response_excerpt",
            "duration_ms",
            "created_at",
        ]


class WebhookDeliverySerializer(serializers.ModelSerializer):
    attempts_log = WebhookAttemptSerializer(
        source="attempt_log", many=True, read_only=True
    )

    class Meta:
        model = WebhookDelivery
        fields = [
            "delivery_id",
            "event",
            "status",
            "attempts",
            "next_attempt_at",
            "last_status_code",
            "last_error",
            "delivered_at",
            "created_at",
            "payload",
            "attempts_log",
        ]
