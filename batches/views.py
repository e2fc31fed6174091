"""Batch endpoints of /api/v1/. Thin: validate, call the service, serialise.

Batches are looked up by their public ``batch_id`` within the caller's
account; another account's batch, or a deleted one, is 404.
"""

from __future__ import annotations

from django.db import transaction
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response

from accounts.actor import Actor, Source
from accounts.idempotency import idempotent
from batches import services
from batches.models import Batch
from batches.report import batch_report
from batches.selectors import batch_stats
from batches.serializers import (
    BatchActionResponseSerializer,
    BatchCancelResponseSerializer,
    BatchCreateSerializer,
    BatchDeleteResponseSerializer,
    BatchSerializer,
    BatchStatsSerializer,
    BatchUpdateResponseSerializer,
    BatchUpdateSerializer,
)
from callcenter.api import (
    PUBLIC_ID_RE,
    ApiError,
    StrictCharField,
    StrictSerializer,
    error_responses,
    parse_strict_bool,
    request_membership,
)
from jobs.imports import ImportResult, jobs_import, rows_from_json

IDEMPOTENCY_PARAMETER = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=False,
    description="Retrying a POST with the same key returns the first response "
    "and never creates twice (kept API_IDEMPOTENCY_TTL_HOURS).",
)
BATCH_ID_PARAMETER = OpenApiParameter(
    "batch_id",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    description="The public batch id, e.g. batch-2025-10-25-144129-862530.",
)


class AccountScopedView(GenericAPIView):
    """The caller's account, and lookups confined to it."""

    @property
    def account(self):
        return request_membership(self.request).account

    def get_batch(self, batch_id: str) -> Batch:
        if not PUBLIC_ID_RE.match(batch_id):
            raise exceptions.NotFound("Batch not found.")
        try:
            return Batch.objects.get(account_id=self.account.pk, batch_id=batch_id)
        except Batch.DoesNotExist:
            raise exceptions.NotFound("Batch not found.") from None

    # The browsable API's forms call these two.
    def get_queryset(self):
        return Batch.objects.filter(account_id=self.account.pk)

    def get_object(self):
        if "batch_id" not in self.kwargs:
            raise exceptions.NotFound()
        return self.get_batch(self.kwargs["batch_id"])

    def actor(self) -> Actor:
        return Actor.from_request(self.request, Source.API)


def import_rows_error(result: ImportResult) -> ApiError:
    n = len(result.errors)
    return ApiError(
        f"{n} row{'s are' if n != 1 else ' is'} invalid; nothing was imported.",
        code="invalid_rows",
        rows=[e.as_dict() for e in result.errors],
    )


class ReasonSerializer(StrictSerializer):
    reason = StrictCharField(
        max_length=255, required=False, allow_blank=True, help_text="Why (audited)."
    )


def _reason(request) -> str:
    data = request.data
    if data in (None, "") or (hasattr(data, "__len__") and len(data) == 0):
        return ""
    serializer = ReasonSerializer(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data.get("reason", "")


BATCH_ORDERING = ["created_at", "-created_at", "priority", "-priority", "name", "-name"]


class BatchFilterSerializer(serializers.Serializer):
    state = serializers.ChoiceField(
        choices=["active", "paused", "cancelled", "completed"], required=False
    )
    ordering = serializers.ChoiceField(
        choices=BATCH_ORDERING, required=False, help_text="Default -created_at."
    )


class BatchListCreateView(AccountScopedView):
    """List the account's batches, or create one (optionally with jobs)."""

    serializer_class = BatchSerializer

    @extend_schema(
        operation_id="batches_list",
        parameters=[BatchFilterSerializer],
        responses={200: BatchSerializer(many=True), **error_responses()},
    )
    def get(self, request):
        params = BatchFilterSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        queryset = Batch.objects.filter(account_id=self.account.pk)
        state = params.validated_data.get("state")
        if state == "cancelled":
            queryset = queryset.filter(cancelled_at__isnull=False)
        elif state:
            queryset = queryset.filter(cancelled_at__isnull=True)
            if state == "completed":
                queryset = queryset.filter(completed_at__isnull=False)
            else:
                queryset = queryset.filter(
                    completed_at__isnull=True, is_active=(state == "active")
                )
        ordering = params.validated_data.get("ordering", "-created_at")
        queryset = queryset.order_by(ordering, "-id")
        page = self.paginate_queryset(queryset)
        data = BatchSerializer(
            page, many=True, context=BatchSerializer.context_for(page)
        ).data
        return self.get_paginated_response(data)

    @extend_schema(
        operation_id="batches_create",
        request=BatchCreateSerializer,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={201: BatchSerializer, **error_responses(409, 413, 422)},
    )
    def post(self, request):
        return idempotent(
            request, account=self.account, create=lambda: self._create(request)
        )

    def _create(self, request) -> Response:
        serializer = BatchCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        jobs = data.pop("jobs", None)
        actor = self.actor()
        with transaction.atomic():
            batch = services.batch_create(account=self.account, actor=actor, **data)
            if jobs:
                result = jobs_import(
                    batch=batch, rows=rows_from_json(jobs), actor=actor
                )
                if not result.ok:
                    raise import_rows_error(result)
        return Response(
            BatchSerializer(batch).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": f"/api/v1/batches/{batch.batch_id}"},
        )


class BatchDetailView(AccountScopedView):
    """One batch: read, change (PATCH) or delete."""

    serializer_class = BatchSerializer

    @extend_schema(
        operation_id="batches_retrieve",
        parameters=[BATCH_ID_PARAMETER],
        responses={200: BatchSerializer, **error_responses()},
    )
    def get(self, request, batch_id: str):
        return Response(BatchSerializer(self.get_batch(batch_id)).data)

    @extend_schema(
        operation_id="batches_update",
        parameters=[BATCH_ID_PARAMETER],
        request=BatchUpdateSerializer,
        responses={200: BatchUpdateResponseSerializer, **error_responses(409)},
        description="Change any of is_active (false pauses, true resumes), "
        "name, description and priority. Answers with the fields that really "
        "changed; a PATCH that changes nothing says so. Reactivating a "
        "cancelled batch is 409.",
    )
    def patch(self, request, batch_id: str):
        batch = self.get_batch(batch_id)
        serializer = BatchUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        changed = services.batch_update(
            batch=batch, actor=self.actor(), **serializer.validated_data
        )
        message = f"Updated: {', '.join(changed)}." if changed else "No changes."
        return Response(
            {
                "batch": BatchSerializer(batch).data,
                "updated_fields": changed,
                "message": message,
            }
        )

    @extend_schema(
        operation_id="batches_destroy",
        parameters=[
            BATCH_ID_PARAMETER,
            OpenApiParameter(
                "delete_jobs",
                OpenApiTypes.STR,
                enum=["true", "false"],
                description="true also removes all of the batch's jobs. By "
                "default pending, scheduled and in-progress jobs become "
                "cancelled (reason 'Batch deleted') and finished jobs stay.",
            ),
        ],
        responses={200: BatchDeleteResponseSerializer, **error_responses(409)},
    )
    def delete(self, request, batch_id: str):
        batch = self.get_batch(batch_id)
        delete_jobs = parse_strict_bool(
            "delete_jobs", request.query_params.get("delete_jobs")
        )
        result = services.batch_delete(
            batch=batch, actor=self.actor(), delete_jobs=delete_jobs
        )
        return Response(
            {
                "batch_id": batch.batch_id,
                "deleted": True,
                "cancelled_jobs": result.cancelled_jobs,
                "deleted_jobs": result.deleted_jobs,
                "message": "Batch deleted.",
            }
        )


def _action_schema(operation_id: str):
    return extend_schema(
        operation_id=operation_id,
        parameters=[BATCH_ID_PARAMETER],
        request=ReasonSerializer,
        responses={200: BatchActionResponseSerializer, **error_responses(409)},
    )


class BatchPauseView(AccountScopedView):
    """Legacy route: PUT (as in the reference) or POST. Idempotent."""

    serializer_class = BatchActionResponseSerializer

    def _pause(self, request, batch_id: str) -> Response:
        batch = self.get_batch(batch_id)
        changed = services.batch_pause(
            batch=batch, actor=self.actor(), reason=_reason(request)
        )
        return Response(
            {
                "batch": BatchSerializer(batch).data,
                "changed": changed,
                "message": "Batch paused."
                if changed
                else f"Nothing to do: the batch is {batch.state}.",
            }
        )

    @_action_schema("batches_pause")
    def put(self, request, batch_id: str):
        return self._pause(request, batch_id)

    @_action_schema("batches_pause_post")
    def post(self, request, batch_id: str):
        return self._pause(request, batch_id)


class BatchResumeView(AccountScopedView):
    """Legacy route: PUT (as in the reference) or POST. Idempotent; a
    cancelled batch cannot be resumed (409)."""

    serializer_class = BatchActionResponseSerializer

    def _resume(self, request, batch_id: str) -> Response:
        batch = self.get_batch(batch_id)
        _reason(request)  # validates the (optional) body like pause does
        changed = services.batch_resume(batch=batch, actor=self.actor())
        return Response(
            {
                "batch": BatchSerializer(batch).data,
                "changed": changed,
                "message": "Batch resumed." if changed else "Batch was already active.",
            }
        )

    @_action_schema("batches_resume")
    def put(self, request, batch_id: str):
        return self._resume(request, batch_id)

    @_action_schema("batches_resume_post")
    def post(self, request, batch_id: str):
        return self._resume(request, batch_id)


class BatchCancelView(AccountScopedView):
    """Cancel a batch permanently."""

    serializer_class = BatchCancelResponseSerializer

    @extend_schema(
        operation_id="batches_cancel",
        parameters=[BATCH_ID_PARAMETER],
        request=ReasonSerializer,
        responses={200: BatchCancelResponseSerializer, **error_responses(409)},
        description="Cancel permanently: every job that is not finished "
        "becomes cancelled. Cancelling again only finishes an interrupted sweep.",
    )
    def post(self, request, batch_id: str):
        batch = self.get_batch(batch_id)
        reason = _reason(request) or services.BATCH_CANCELLED_REASON
        was_cancelled = batch.cancelled_at is not None
        cancelled = services.batch_cancel(
            batch=batch, actor=self.actor(), reason=reason
        )
        return Response(
            {
                "batch": BatchSerializer(batch).data,
                "changed": not was_cancelled,
                "cancelled_jobs": cancelled,
                "message": "Batch was already cancelled."
                if was_cancelled
                else "Batch cancelled.",
            }
        )


class BatchStatsView(AccountScopedView):
    """Statistics of a batch's jobs."""

    serializer_class = BatchStatsSerializer

    @extend_schema(
        operation_id="batches_stats",
        parameters=[BATCH_ID_PARAMETER],
        responses={200: BatchStatsSerializer, **error_responses()},
        description="Job counts for every status (cancelled included), "
        "progress, calls in progress, first and last call times, and the "
        "batch's state with the reason for its pause.",
    )
    def get(self, request, batch_id: str):
        return Response(
            BatchStatsSerializer(batch_stats(batch=self.get_batch(batch_id))).data
        )


class BatchReportView(AccountScopedView):
    """How the batch went, and when it will end."""

    @extend_schema(
        operation_id="batches_report",
        parameters=[BATCH_ID_PARAMETER],
        responses={200: OpenApiTypes.OBJECT, **error_responses()},
        description="Counts and progress; calls placed, answered and per hour; "
        "the answer rate; outcomes of finished jobs per hour; average and p90 "
        "call duration; attempts per contact; cost in credits; why the "
        "remaining jobs wait; the rate over the last hour and the estimated "
        "completion time at that rate (null with `why_not` when there is none).",
    )
    def get(self, request, batch_id: str):
        return Response(batch_report(batch=self.get_batch(batch_id)))
