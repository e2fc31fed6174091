"""API representations of batches. Input serializers are strict: JSON types
only, unknown fields rejected."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from batches.models import Batch, Operation, Voice
from batches.selectors import REPORTED_STATUSES, batch_status_counts
from callcenter.api import (
    StrictBooleanField,
    StrictCharField,
    StrictIntegerField,
    StrictSerializer,
    priority_field,
)
from jobs.breaker import BreakerError, validate_breaker
from jobs.rules.retries import effective_policy, parse_policy
from jobs.rules.windows import Window, WindowError


class JobCountsSerializer(serializers.Serializer):
    """Jobs per status; the legacy `done` is counted as `completed`."""

    def get_fields(self):
        return {s: serializers.IntegerField() for s in REPORTED_STATUSES}


class BatchSerializer(serializers.ModelSerializer):
    state = serializers.ChoiceField(
        choices=[s for s in Batch.State.values if s != Batch.State.DELETED],
        read_only=True,
        help_text="active, paused, cancelled or completed.",
    )
    pause_source = serializers.CharField(
        read_only=True,
        help_text="Who paused it: api, admin, command, worker or system; "
        "empty when not paused.",
    )
    job_counts = serializers.SerializerMethodField()
    retry_policy = serializers.SerializerMethodField()

    class Meta:
        model = Batch
        fields = [
            "batch_id",
            "name",
            "description",
            "priority",
            "voice",
            "max_concurrent_calls",
            "breaker",
            "is_active",
            "calling_window",
            "retry_policy",
            "state",
            "paused_at",
            "pause_source",
            "pause_reason",
            "cancelled_at",
            "completed_at",
            "created_at",
            "updated_at",
            "job_counts",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.DictField())
    def get_retry_policy(self, batch: Batch) -> dict[str, Any]:
        """The whole policy in effect: the defaults with the batch's changes."""
        return effective_policy(batch.retry_policy)

    @extend_schema_field(JobCountsSerializer)
    def get_job_counts(self, batch: Batch) -> dict[str, int]:
        counts = self.context.get("job_counts")
        if counts is None or batch.pk not in counts:
            counts = batch_status_counts([batch.pk])
        return counts[batch.pk]

    @staticmethod
    def context_for(batches: list[Batch]) -> dict[str, Any]:
        """Counts for a page of batches in one query (no N+1)."""
        return {"job_counts": batch_status_counts([b.pk for b in batches])}


def max_concurrent_calls_field() -> StrictIntegerField:
    return StrictIntegerField(
        min_value=0,
        max_value=100_000,
        allow_null=True,
        required=False,
        help_text="Calls of this batch in progress at once, across all "
        "workers; null: no cap (the account's own cap still applies).",
    )


class BreakerSettingSerializer(serializers.Serializer):
    window = serializers.IntegerField(
        min_value=1, help_text="How many of the last ended calls to look at."
    )
    max_failure_ratio = serializers.FloatField(
        min_value=0, max_value=1, help_text="From 0 to 1."
    )


@extend_schema_field(BreakerSettingSerializer(allow_null=True))
class BreakerField(serializers.Field):
    """The circuit breaker: {"window": N, "max_failure_ratio": r}, or null.
    When more than r of the batch's last N ended calls failed, the batch is
    paused by the system; a person resumes it."""

    def to_internal_value(self, data: Any) -> dict[str, Any] | None:
        try:
            return validate_breaker(data)
        except BreakerError as exc:
            name = exc.field.removeprefix("breaker").removeprefix(".")
            detail = {name: [str(exc)]} if name else [str(exc)]
            raise serializers.ValidationError(detail) from None

    def to_representation(self, value: Any) -> Any:
        return value


class JobRowSerializer(StrictSerializer):
    """One job to add, in a JSON import."""

    phone_number = StrictCharField(
        max_length=40,
        help_text="Any format; national numbers use DEFAULT_PHONE_REGION. "
        "Stored in E.164.",
    )
    variables = serializers.DictField(
        required=False, help_text="Per-contact variables for the agent or script."
    )
    scheduled_at = serializers.DateTimeField(
        required=False,
        allow_null=True,
        help_text="In the future: the job is `scheduled` until then.",
    )
    priority = priority_field(required=False)
    timezone = StrictCharField(
        required=False,
        allow_blank=True,
        max_length=64,
        help_text="IANA time zone of the recipient (e.g. America/Chicago); "
        "replaces the zones taken from the number.",
    )
    consent_at = serializers.DateTimeField(
        required=False,
        allow_null=True,
        help_text="When the person gave prior express consent to be called "
        "(needed by ai and prerecorded batches).",
    )


@extend_schema_field(JobRowSerializer(many=True))
class JobRowsField(serializers.ListField):
    """Import rows. The import service validates them, so that errors are
    reported per row; the schema documents the row shape."""

    child = serializers.JSONField()


class CallingWindowField(serializers.JSONField):
    """{"start": "HH:MM", "end": "HH:MM", "days": [...]}, checked and
    normalised; an error names the part that is wrong."""

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        try:
            return Window.parse(data, "calling_window").as_json()
        except WindowError as error:
            raise serializers.ValidationError(
                f"{error.field}: {error.message}"
            ) from None


class RetryPolicyField(serializers.JSONField):
    """Per outcome (busy, no_answer, voicemail, failed, error):
    {"retry": bool, "delay_seconds": int}; outcomes left out keep the
    defaults."""

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        try:
            return parse_policy(data, "retry_policy")
        except WindowError as error:
            raise serializers.ValidationError(
                f"{error.field}: {error.message}"
            ) from None


WINDOW_HELP = (
    'When jobs may be dialled, in each recipient\'s local time: {"start": '
    '"HH:MM", "end": "HH:MM", "days": ["mon", ...]} ("24:00" is allowed as '
    "an end). Default: 08:00-21:00 every day. US state rules narrow it."
)
POLICY_HELP = (
    "Per outcome (busy, no_answer, voicemail, failed, error): "
    '{"retry": bool, "delay_seconds": int}. Defaults: busy after 600 s, '
    "no_answer after 1800 s, voicemail and failed not retried, error after "
    "300 s only if the call never connected."
)


class BatchCreateSerializer(StrictSerializer):
    name = StrictCharField(max_length=200)
    description = StrictCharField(max_length=10000, required=False, allow_blank=True)
    priority = priority_field(required=False)
    is_active = StrictBooleanField(
        required=False, help_text="false creates the batch paused."
    )
    calling_window = CallingWindowField(required=False, help_text=WINDOW_HELP)
    retry_policy = RetryPolicyField(required=False, help_text=POLICY_HELP)
    voice = serializers.ChoiceField(
        choices=Voice.choices,
        required=False,
        help_text="Who speaks: human (default), ai or prerecorded. An ai or "
        "prerecorded voice calls only jobs with consent_at (FCC 24-17).",
    )
    max_concurrent_calls = max_concurrent_calls_field()
    breaker = BreakerField(required=False, allow_null=True)
    jobs = JobRowsField(
        required=False,
        help_text="Optional jobs to add in the same request, as in the jobs "
        "import. All or nothing together with the batch.",
    )


class BatchUpdateSerializer(StrictSerializer):
    is_active = StrictBooleanField(
        required=False, help_text="false pauses, true resumes."
    )
    name = StrictCharField(max_length=200, required=False)
    description = StrictCharField(max_length=10000, required=False, allow_blank=True)
    priority = priority_field(required=False)
    calling_window = CallingWindowField(required=False, help_text=WINDOW_HELP)
    retry_policy = RetryPolicyField(
        required=False, help_text=POLICY_HELP + " Replaces the batch's policy."
    )
    voice = serializers.ChoiceField(
        choices=Voice.choices,
        required=False,
        help_text="Who speaks: human (default), ai or prerecorded. An ai or "
        "prerecorded voice calls only jobs with consent_at (FCC 24-17).",
    )
    max_concurrent_calls = max_concurrent_calls_field()
    breaker = BreakerField(required=False, allow_null=True)


class BatchUpdateResponseSerializer(serializers.Serializer):
    batch = BatchSerializer()
    updated_fields = serializers.ListField(child=serializers.CharField())
    message = serializers.CharField()


class BatchActionResponseSerializer(serializers.Serializer):
    batch = BatchSerializer()
    changed = serializers.BooleanField(
        help_text="false when the batch was already in the requested state."
    )
    message = serializers.CharField()


class BatchCancelResponseSerializer(BatchActionResponseSerializer):
    cancelled_jobs = serializers.IntegerField()


class BatchDeleteResponseSerializer(serializers.Serializer):
    batch_id = serializers.CharField()
    deleted = serializers.BooleanField()
    cancelled_jobs = serializers.IntegerField()
    deleted_jobs = serializers.IntegerField()
    message = serializers.CharField()


class OperationSerializer(serializers.ModelSerializer):
    """A background sweep and its progress (GET /api/v1/operations/{id})."""

    operation_id = serializers.UUIDField(read_only=True)
    batch_id = serializers.CharField(source="batch_public_id", read_only=True)
    percent = serializers.IntegerField(
        read_only=True, help_text="done / total, 0 to 100 (100 once succeeded)."
    )
    url = serializers.SerializerMethodField()

    class Meta:
        model = Operation
        fields = [
            "operation_id",
            "url",
            "kind",
            "state",
            "batch_id",
            "total",
            "done",
            "percent",
            "cancelled_jobs",
            "deleted_jobs",
            "errors",
            "reason",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_url(self, operation: Operation) -> str:
        return f"/api/v1/operations/{operation.operation_id}"


class BatchCancelAcceptedSerializer(BatchCancelResponseSerializer):
    operation = OperationSerializer()


class BatchDeleteAcceptedSerializer(BatchDeleteResponseSerializer):
    operation = OperationSerializer()


class BatchStatsSerializer(serializers.Serializer):
    batch_id = serializers.CharField()
    state = serializers.CharField()
    is_active = serializers.BooleanField()
    pause_reason = serializers.CharField(allow_blank=True)
    pause_source = serializers.CharField(allow_blank=True)
    paused_at = serializers.DateTimeField(allow_null=True)
    counts = JobCountsSerializer(help_text="Jobs per status, cancelled included.")
    total = serializers.IntegerField()
    finished = serializers.IntegerField(
        help_text="completed + failed + cancelled jobs."
    )
    in_progress = serializers.IntegerField(help_text="Calls in progress now.")
    progress = serializers.FloatField(help_text="finished / total, from 0 to 1.")
    first_call_at = serializers.DateTimeField(allow_null=True)
    last_call_at = serializers.DateTimeField(allow_null=True)
