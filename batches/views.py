"""Batch endpoints of /api/v1/. Thin: validate, call the service, serialise.

Batches are looked up by their public ``batch_id`` within the caller's
account; another account's batch, or a deleted one, is 404.
"""

from __future__ import annotations

from uuid import UUID

from django.db import transaction
from django.utils.translation import gettext as _
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, status
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts.api import (
    IDEMPOTENCY_PARAMETER,
    AccountScopedView,
    AccountScopedViewSet,
)
from accounts.models import Account
from batches import operations, services
from batches.filters import BatchFilter
from batches.models import Batch, Operation
from batches.report import batch_report
from batches.selectors import batch_stats
from batches.serializers import (
    BatchActionResponseSerializer,
    BatchCancelAcceptedSerializer,
    BatchCancelResponseSerializer,
    BatchCreateSerializer,
    BatchDeleteAcceptedSerializer,
    BatchDeleteResponseSerializer,
    BatchSerializer,
    BatchStatsSerializer,
    BatchUpdateResponseSerializer,
    BatchUpdateSerializer,
    OperationSerializer,
)
from callcenter.api import (
    PUBLIC_ID_RE,
    ApiError,
    StrictCharField,
    StrictSerializer,
    error_responses,
    parse_strict_bool,
)
from jobs.imports import ImportResult, jobs_import, rows_from_json

BATCH_ID_PARAMETER = OpenApiParameter(
    "batch_id",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    description="The public batch id, e.g. batch-2025-10-25-144129-862530.",
)


def account_batch(account: Account, batch_id: str) -> Batch:
    """The account's live batch with this public id, or 404."""
    if not PUBLIC_ID_RE.match(batch_id):
        raise exceptions.NotFound(_("Batch not found."))
    try:
        return Batch.objects.get(account_id=account.pk, batch_id=batch_id)
    except Batch.DoesNotExist:
        raise exceptions.NotFound(_("Batch not found.")) from None


class BatchScopedView(AccountScopedView):
    """A view under /batches/{batch_id}/ that is not one of the batch's
    actions (the results downloads)."""

    def get_batch(self, batch_id: str) -> Batch:
        return account_batch(self.account, batch_id)

    # The browsable API's forms call these two.
    def get_queryset(self):
        return Batch.objects.filter(account_id=self.account.pk)

    def get_object(self) -> Batch:
        return self.get_batch(self.kwargs["batch_id"])


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


def _action_schema(method: str, operation_id: str):
    return extend_schema(
        methods=[method],
        operation_id=operation_id,
        parameters=[BATCH_ID_PARAMETER],
        request=ReasonSerializer,
        responses={200: BatchActionResponseSerializer, **error_responses(409)},
    )


def _maybe_accepted(
    body: dict, result: operations.SweepResult, message: str
) -> Response:
    """200 with the counts of an inline sweep; 202 with the operation of a
    background one (and its URL in Location)."""
    if result.operation is None:
        return Response(body)
    data = OperationSerializer(result.operation).data
    return Response(
        {**body, "message": message, "operation": data},
        status=status.HTTP_202_ACCEPTED,
        headers={"Location": data["url"]},
    )


OPERATION_ID_PARAMETER = OpenApiParameter(
    "operation_id",
    OpenApiTypes.UUID,
    OpenApiParameter.PATH,
    description="The operation's id, from the 202 answer of a cancel or delete.",
)


class OperationViewSet(AccountScopedViewSet):
    """/operations: the account's background sweeps and their progress."""

    serializer_class = OperationSerializer
    lookup_field = "operation_id"
    lookup_value_regex = "[^/]+"
    queryset = Operation.objects.none()  # the model, for the schema

    def get_queryset(self):
        return Operation.objects.filter(account_id=self.account.pk).order_by(
            "-created_at", "-id"
        )

    @extend_schema(
        operation_id="operations_list",
        responses={200: OperationSerializer(many=True), **error_responses()},
    )
    def list(self, request):
        """The account's operations, newest first."""
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(OperationSerializer(page, many=True).data)

    @extend_schema(
        operation_id="operations_retrieve",
        parameters=[OPERATION_ID_PARAMETER],
        responses={200: OperationSerializer, **error_responses()},
    )
    def retrieve(self, request, operation_id: str):
        """One operation: its state and progress (done of total)."""
        try:
            uuid = UUID(operation_id)
        except ValueError:
            raise exceptions.NotFound(_("Operation not found.")) from None
        operation = self.get_queryset().filter(operation_id=uuid).first()
        if operation is None:
            raise exceptions.NotFound(_("Operation not found."))
        return Response(OperationSerializer(operation).data)


class BatchViewSet(AccountScopedViewSet):
    """/batches: the account's batches; pause, resume, cancel, stats, report.

    pause and resume answer PUT (as the original system did) and POST, and
    are idempotent.
    """

    serializer_class = BatchSerializer
    lookup_field = "batch_id"
    lookup_value_regex = "[^/]+"
    filter_backends = [DjangoFilterBackend]
    filterset_class = BatchFilter  # ?state=, ?ordering=
    queryset = Batch.objects.none()  # the model, for the schema; see get_queryset
    # The browsable API's forms, per route (the detail route's is the batch).
    action_serializers = {
        "pause": BatchActionResponseSerializer,
        "resume": BatchActionResponseSerializer,
        "cancel": BatchCancelResponseSerializer,
        "stats": BatchStatsSerializer,
    }

    def get_serializer_class(self):
        return self.action_serializers.get(self.action, BatchSerializer)

    def get_queryset(self):
        return Batch.objects.filter(account_id=self.account.pk)

    def get_object(self) -> Batch:
        if "batch_id" not in self.kwargs:
            raise exceptions.NotFound()
        return account_batch(self.account, self.kwargs["batch_id"])

    @extend_schema(
        operation_id="batches_list",
        responses={200: BatchSerializer(many=True), **error_responses()},
    )
    def list(self, request):
        """List the account's batches."""
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
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
    def create(self, request):
        """Create a batch, optionally with its jobs."""
        return self.idempotent(lambda: self._create(request))

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

    @extend_schema(
        operation_id="batches_retrieve",
        parameters=[BATCH_ID_PARAMETER],
        responses={200: BatchSerializer, **error_responses()},
    )
    def retrieve(self, request, batch_id: str):
        """One batch."""
        return Response(BatchSerializer(self.get_object()).data)

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
    def partial_update(self, request, batch_id: str):
        batch = self.get_object()
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
        responses={
            200: BatchDeleteResponseSerializer,
            202: BatchDeleteAcceptedSerializer,
            **error_responses(409),
        },
        description="Delete a batch. With more than SWEEP_INLINE_MAX_JOBS jobs "
        "to sweep, the batch is deleted at once and its jobs are swept in the "
        "background: 202 with the operation, whose progress "
        "GET /api/v1/operations/{operation_id} gives.",
    )
    def destroy(self, request, batch_id: str):
        """Delete a batch."""
        batch = self.get_object()
        delete_jobs = parse_strict_bool(
            "delete_jobs", request.query_params.get("delete_jobs")
        )
        result = operations.batch_delete_request(
            batch=batch, actor=self.actor(), delete_jobs=delete_jobs
        )
        body = {
            "batch_id": batch.batch_id,
            "deleted": True,
            "cancelled_jobs": result.cancelled_jobs,
            "deleted_jobs": result.deleted_jobs,
            "message": "Batch deleted.",
        }
        return _maybe_accepted(
            body, result, "Batch deleted; its jobs are swept in the background."
        )

    @_action_schema("PUT", "batches_pause")
    @_action_schema("POST", "batches_pause_post")
    @action(detail=True, methods=["put", "post"])
    def pause(self, request, batch_id: str):
        """PUT (as in the original system) or POST. Idempotent."""
        batch = self.get_object()
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

    @_action_schema("PUT", "batches_resume")
    @_action_schema("POST", "batches_resume_post")
    @action(detail=True, methods=["put", "post"])
    def resume(self, request, batch_id: str):
        """PUT (as in the original system) or POST. Idempotent; a cancelled
        batch cannot be resumed (409)."""
        batch = self.get_object()
        _reason(request)  # validates the (optional) body like pause does
        changed = services.batch_resume(batch=batch, actor=self.actor())
        return Response(
            {
                "batch": BatchSerializer(batch).data,
                "changed": changed,
                "message": "Batch resumed." if changed else "Batch was already active.",
            }
        )

    @extend_schema(
        operation_id="batches_cancel",
        parameters=[BATCH_ID_PARAMETER],
        request=ReasonSerializer,
        responses={
            200: BatchCancelResponseSerializer,
            202: BatchCancelAcceptedSerializer,
            **error_responses(409),
        },
        description="Cancel permanently: every job that is not finished "
        "becomes cancelled. Cancelling again only finishes an interrupted sweep. "
        "With more than SWEEP_INLINE_MAX_JOBS jobs to cancel, the batch is "
        "cancelled at once (no job of it starts after the answer) and its jobs "
        "are cancelled in the background: 202 with the operation.",
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request, batch_id: str):
        batch = self.get_object()
        reason = _reason(request) or services.BATCH_CANCELLED_REASON
        was_cancelled = batch.cancelled_at is not None
        result = operations.batch_cancel_request(
            batch=batch, actor=self.actor(), reason=reason
        )
        body = {
            "batch": BatchSerializer(batch).data,
            "changed": not was_cancelled,
            "cancelled_jobs": result.cancelled_jobs,
            "message": "Batch was already cancelled."
            if was_cancelled
            else "Batch cancelled.",
        }
        return _maybe_accepted(
            body, result, "Batch cancelled; its jobs are cancelled in the background."
        )

    @extend_schema(
        operation_id="batches_stats",
        parameters=[BATCH_ID_PARAMETER],
        responses={200: BatchStatsSerializer, **error_responses()},
        description="Job counts for every status (cancelled included), "
        "progress, calls in progress, first and last call times, and the "
        "batch's state with the reason for its pause.",
    )
    @action(detail=True, methods=["get"])
    def stats(self, request, batch_id: str):
        return Response(BatchStatsSerializer(batch_stats(batch=self.get_object())).data)

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
    @action(detail=True, methods=["get"])
    def report(self, request, batch_id: str):
        """How the batch went, and when it will end."""
        return Response(batch_report(batch=self.get_object()))
