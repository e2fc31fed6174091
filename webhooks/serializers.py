from __future__ import annotations

from rest_framework import serializers

from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint


class WebhookEndpointSerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookEndpoint
        fields = [
            "id",
            "url",
            "event_types",
            "description",
            "is_active",
            "secret",
            "created_at",
            "updated_at",
        ]
        # The secret is generated, and shown so the receiver can verify
        # signatures; it cannot be chosen (a weak one would be the easy path).
        read_only_fields = ["id", "secret", "created_at", "updated_at"]


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
