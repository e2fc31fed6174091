"""Job endpoints of /api/v1/: the account's jobs, one job and its actions;
and the upload parsers. A batch's jobs (list, import, results) are in
batches/job_views.py."""

from __future__ import annotations

import tempfile

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.utils.translation import gettext as _
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions
from rest_framework.decorators import action
from rest_framework.parsers import BaseParser, DataAndFiles, MultiPartParser
from rest_framework.response import Response

from accounts.api import AccountScopedViewSet
from callcenter.api import (
    body_too_large,
    error_responses,
    refuse_large_body,
)
from jobs import services
from jobs.filters import AccountJobFilter
from jobs.models import CallAttempt, Job
from jobs.serializers import (
    CallAttemptSerializer,
    ExplainSerializer,
    JobCancelResponseSerializer,
    JobCancelSerializer,
    JobSerializer,
    JobUpdateSerializer,
    OptOutResponseSerializer,
)

MAX_JOB_PK = 2**63 - 1


UPLOAD_CHUNK = 64 * 1024


class CSVBodyParser(BaseParser):
    """A raw text/csv body, handled like an uploaded `file`.

    The body is copied in chunks to a temporary file (in memory up to
    FILE_UPLOAD_MAX_MEMORY_SIZE, then on disk), counting the bytes against
    IMPORT_MAX_BYTES, and the import then reads it row by row: memory holds
    a chunk, never the file, and no transaction waits on a slow client.
    """

    media_type = "text/csv"

    def parse(self, stream, media_type=None, parser_context=None):
        refuse_large_body(parser_context)
        limit = settings.IMPORT_MAX_BYTES
        # Freed with the upload after the request; once rolled over to disk
        # it is an unnamed file, so nothing is left behind.
        spool = tempfile.SpooledTemporaryFile(  # noqa: SIM115
            max_size=settings.FILE_UPLOAD_MAX_MEMORY_SIZE
        )
        size = 0
        while stream is not None and (chunk := stream.read(UPLOAD_CHUNK)):
            size += len(chunk)
            if size > limit:
                spool.close()
                raise body_too_large(limit)
            spool.write(chunk)
        spool.seek(0)
        upload = UploadedFile(
            spool, name="upload.csv", content_type="text/csv", size=size
        )
        return DataAndFiles({}, {"file": upload})


class UploadParser(MultiPartParser):
    """multipart/form-data with the body limit. Django's multipart parser
    reads no more than the declared length (and nothing without one), so
    refusing a declared length over the limit bounds it; files over
    FILE_UPLOAD_MAX_MEMORY_SIZE go to disk as they stream in."""

    def parse(self, stream, media_type=None, parser_context=None):
        refuse_large_body(parser_context)
        return super().parse(stream, media_type, parser_context)


JOB_ID_PARAMETER = OpenApiParameter(
    "job_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The job's id."
)


class JobViewSet(AccountScopedViewSet):
    """/jobs: the account's jobs, one job, and cancelling one job."""

    serializer_class = JobSerializer
    filter_backends = [DjangoFilterBackend]
    filterset_class = AccountJobFilter  # ?status=, ?ordering=, ?batch=, ?phone=
    queryset = Job.objects.none()  # the model, for the schema; see get_queryset
    lookup_field = "job_id"
    lookup_value_regex = "[0-9]+"

    def get_serializer_class(self):
        # The browsable API's form for the cancel route.
        if self.action == "cancel":
            return JobCancelResponseSerializer
        if self.action == "explain":
            return ExplainSerializer
        if self.action == "opt_out":
            return OptOutResponseSerializer
        if self.action == "partial_update":
            return JobUpdateSerializer
        if self.action == "attempts":
            return CallAttemptSerializer
        return JobSerializer

    def get_queryset(self):
        return Job.objects.filter(account_id=self.account.pk)

    def get_object(self) -> Job:
        job_id = int(self.kwargs["job_id"])
        if job_id > MAX_JOB_PK:
            raise exceptions.NotFound(_("Job not found."))
        try:
            return Job.objects.select_related("batch").get(
                pk=job_id, account_id=self.account.pk
            )
        except Job.DoesNotExist:
            raise exceptions.NotFound(_("Job not found.")) from None

    @extend_schema(
        operation_id="jobs_list",
        responses={200: JobSerializer(many=True), **error_responses()},
    )
    def list(self, request):
        """The account's jobs, filtered by batch, status and phone."""
        queryset = self.get_queryset().select_related("batch")
        page = self.paginate_queryset(self.filter_queryset(queryset))
        return self.get_paginated_response(JobSerializer(page, many=True).data)

    @extend_schema(
        operation_id="jobs_retrieve",
        parameters=[JOB_ID_PARAMETER],
        responses={200: JobSerializer, **error_responses()},
    )
    def retrieve(self, request, job_id: str):
        """One job: status, attempts, claim, outcome and cancel reason."""
        return Response(JobSerializer(self.get_object()).data)

    @extend_schema(
        operation_id="jobs_attempts",
        parameters=[JOB_ID_PARAMETER],
        responses={200: CallAttemptSerializer(many=True), **error_responses()},
    )
    @action(detail=True, methods=["get"], pagination_class=None)
    def attempts(self, request, job_id: str):
        """The job's call attempts, oldest first: one row per dial, with the
        provider's call id, status, times, duration, outcome and raw events."""
        job = self.get_object()
        rows = CallAttempt.objects.filter(job_id=job.pk).order_by("attempt", "id")
        return Response(CallAttemptSerializer(rows, many=True).data)

    @extend_schema(
        operation_id="jobs_cancel",
        parameters=[JOB_ID_PARAMETER],
        request=JobCancelSerializer,
        responses={200: JobCancelResponseSerializer, **error_responses(409)},
        description="Cancel one job. A finished job cannot be cancelled (409).",
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request, job_id: str):
        job = self.get_object()
        data = request.data
        if data is None or data in ("", [], {}):
            data = {}  # no body: cancel with the default reason
        serializer = JobCancelSerializer(data=data)
        serializer.is_valid(raise_exception=True)
        cancelled = services.job_cancel(
            job=job, actor=self.actor(), **serializer.validated_data
        )
        cancelled.batch = job.batch
        return Response(
            {"job": JobSerializer(cancelled).data, "message": "Job cancelled."}
        )

    @extend_schema(
        operation_id="jobs_partial_update",
        parameters=[JOB_ID_PARAMETER],
        request=JobUpdateSerializer,
        responses={200: JobSerializer, **error_responses(409)},
        description="Set or clear the job's consent_at (prior express consent, "
        "needed by ai and prerecorded batches). A finished job: 409.",
    )
    def partial_update(self, request, job_id: str):
        job = self.get_object()
        serializer = JobUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        updated = services.job_set_consent(
            job=job,
            actor=self.actor(),
            consent_at=serializer.validated_data["consent_at"],
        )
        updated.batch = job.batch
        return Response(JobSerializer(updated).data)

    @extend_schema(
        operation_id="jobs_explain",
        parameters=[JOB_ID_PARAMETER],
        responses={200: ExplainSerializer, **error_responses()},
        description="Why the job is or is not being called now: each reason "
        "with a code (batch_paused, batch_cancelled, scheduled, retry_backoff, "
        "dnc, no_credits, no_consent, number_not_allowed, in_progress, "
        "finished, and those of the calling windows and caps), a detail and, "
        "where it ends by itself, until when.",
    )
    @action(detail=True, methods=["get"], pagination_class=None)
    def explain(self, request, job_id: str):
        from jobs.explain import explain

        job = self.get_object()
        return Response(explain(job))

    @extend_schema(
        operation_id="jobs_opt_out",
        parameters=[JOB_ID_PARAMETER],
        request=None,
        responses={200: OptOutResponseSerializer, **error_responses()},
        description="The person asked not to be called again: the job's number "
        "goes on the account's do-not-call list at once, and the number's open "
        "jobs in the account (this one included) are cancelled (opt_out).",
    )
    @action(detail=True, methods=["post"], url_path="opt-out")
    def opt_out(self, request, job_id: str):
        from jobs.dnc import job_opt_out

        job = self.get_object()
        added, cancelled = job_opt_out(job=job, actor=self.actor())
        return Response(
            {
                "phone_number": job.phone_number,
                "added": bool(added.added),
                "cancelled_jobs": cancelled,
            }
        )
