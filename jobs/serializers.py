"""API representations of jobs."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from callcenter.api import StrictCharField, StrictSerializer
from jobs.models import CallAttempt, DncEntry, Job, JobStatus, normalize_status

OUTPUT_STATUSES = [s for s in JobStatus.values if s != JobStatus.DONE]


class JobSerializer(serializers.ModelSerializer):
    batch_id = serializers.SerializerMethodField(
        help_text="The public id of the job's batch, or null."
    )
    status = serializers.SerializerMethodField(
        help_text="The legacy `done` is reported as `completed`."
    )
    outcome = serializers.SerializerMethodField(
        help_text="The outcome of the last call (result.outcome), if any."
    )

    class Meta:
        model = Job
        fields = [
            "id",
            "batch_id",
            "phone_number",
            "variables",
            "status",
            "priority",
            "scheduled_at",
            "attempts",
            "max_attempts",
            "claimed_by",
            "claimed_at",
            "dialed_at",
            "started_at",
            "finished_at",
            "call_id",
            "outcome",
            "result",
            "last_error",
            "cancel_reason",
            "stop_code",
            "consent_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_batch_id(self, job: Job) -> str | None:
        batch = job.batch if job.batch_id else None
        return batch.batch_id if batch is not None else None

    @extend_schema_field(serializers.ChoiceField(choices=OUTPUT_STATUSES))
    def get_status(self, job: Job) -> str:
        return str(normalize_status(job.status))

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_outcome(self, job: Job) -> Any:
        if isinstance(job.result, dict):
            outcome = job.result.get("outcome")
            return None if outcome is None else str(outcome)
        return None


class JobCancelSerializer(StrictSerializer):
    reason = StrictCharField(
        max_length=255,
        required=False,
        help_text='Why; stored as cancel_reason. Default "Cancelled by hand".',
    )


class JobCancelResponseSerializer(serializers.Serializer):
    job = JobSerializer()
    message = serializers.CharField()


class ImportResponseSerializer(serializers.Serializer):
    batch_id = serializers.CharField()
    created = serializers.IntegerField()
    pending = serializers.IntegerField()
    scheduled = serializers.IntegerField()
    message = serializers.CharField()


class CsvUploadSerializer(serializers.Serializer):
    file = serializers.FileField(
        help_text="CSV with a phone_number column; optional scheduled_at and "
        "priority columns; every other column becomes a variable."
    )


class CallAttemptSerializer(serializers.ModelSerializer):
    """One dial of a job, as the provider reported it."""

    class Meta:
        model = CallAttempt
        fields = [
            "attempt",
            "dialer",
            "provider_call_id",
            "provider_status",
            "answered_by",
            "started_at",
            "answered_at",
            "ended_at",
            "duration_seconds",
            "outcome",
            "cost",
            "error",
            "hangup_requested_at",
            "hangup_reason",
            "events",
        ]
        read_only_fields = fields


class JobUpdateSerializer(StrictSerializer):
    consent_at = serializers.DateTimeField(
        allow_null=True,
        help_text="When the person gave prior express consent to be called "
        "(needed by ai and prerecorded batches); null clears it.",
    )


class ReasonSerializer(serializers.Serializer):
    code = serializers.CharField()
    detail = serializers.CharField()
    until = serializers.DateTimeField(allow_null=True)


class ExplainSerializer(serializers.Serializer):
    callable = serializers.BooleanField()
    jobs_ahead = serializers.IntegerField(
        required=False, help_text="A callable job only: pending jobs before it."
    )
    reasons = ReasonSerializer(many=True)


class OptOutResponseSerializer(serializers.Serializer):
    phone_number = serializers.CharField()
    added = serializers.BooleanField(help_text="False: it was listed already.")
    cancelled_jobs = serializers.ListField(child=serializers.IntegerField())


class DncEntrySerializer(serializers.ModelSerializer):
    job = serializers.IntegerField(
        source="job_pk",
        allow_null=True,
        help_text="An opt-out's job.",
    )

    class Meta:
        model = DncEntry
        fields = ["phone_number", "source", "note", "job", "created_at"]
        read_only_fields = fields


class DncAddedSerializer(serializers.Serializer):
    added = serializers.IntegerField()
    already = serializers.IntegerField(help_text="Numbers that were listed already.")
