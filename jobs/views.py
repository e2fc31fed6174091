"""Job endpoints of /api/v1/: the jobs of a batch (list, import), the
account's jobs, one job, and cancelling one job."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.http import StreamingHttpResponse
from django.utils.translation import gettext as _
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, renderers, serializers, status
from rest_framework.decorators import action
from rest_framework.parsers import BaseParser, DataAndFiles, MultiPartParser
from rest_framework.response import Response

from accounts.api import IDEMPOTENCY_PARAMETER, AccountScopedViewSet
from batches.selectors import batch_status_counts
from batches.serializers import JobRowSerializer
from batches.views import (
    BATCH_ID_PARAMETER,
    BatchScopedView,
    account_batch,
    import_rows_error,
)
from callcenter.api import (
    ApiError,
    JSONParser,
    body_too_large,
    error_responses,
    refuse_large_body,
)
from jobs import export, services
from jobs.filters import AccountJobFilter, JobFilter
from jobs.imports import (
    ImportRow,
    jobs_import,
    rows_from_csv,
    rows_from_json,
)
from jobs.models import CallAttempt, Job, JobStatus, normalize_status
from jobs.pagination import BatchJobsPagination
from jobs.serializers import (
    CallAttemptSerializer,
    CsvUploadSerializer,
    ExplainSerializer,
    ImportResponseSerializer,
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


class ResultsFilterSerializer(serializers.Serializer):
    """The job list's filters, as the results export takes them."""

    status = serializers.ChoiceField(
        choices=JobStatus.values,
        required=False,
        help_text="`done` and `completed` both mean completed.",
    )
    outcome = serializers.CharField(
        required=False,
        max_length=64,
        help_text="The last call's outcome (result.outcome), e.g. answered.",
    )
    finished_since = serializers.DateTimeField(
        required=False, help_text="Only jobs finished at or after this time."
    )
    bom = serializers.ChoiceField(
        choices=["0", "1", "true", "false"],
        required=False,
        help_text="CSV only: start with a UTF-8 byte order mark, for spreadsheets.",
    )


class CSVRenderer(renderers.BaseRenderer):
    """Lets a client ask for text/csv (or JSON Lines); errors still go out
    as the API's JSON error body."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return json.dumps(data).encode()


class JSONLinesRenderer(CSVRenderer):
    media_type = "application/x-ndjson"
    format = "jsonl"


RESULTS_DESCRIPTION = (
    "The batch's results, one row per job: batch and job id, phone number, "
    "status, last outcome, attempts, the last attempt's start, end and "
    "duration, finish time, cancel reason, cost in credits, and the job's "
    "variables. Streamed. Filters as on the job list."
)


class ResultsExportView(BatchScopedView):
    """One row per job of the batch, streamed (see jobs.export)."""

    renderer_classes = [renderers.JSONRenderer, CSVRenderer, JSONLinesRenderer]
    fmt = "csv"

    def get(self, request, batch_id: str):
        batch = self.get_batch(batch_id)
        params = ResultsFilterSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        filters = dict(params.validated_data)
        bom = filters.pop("bom", "0") in ("1", "true")
        if bom and self.fmt != "csv":
            raise ApiError(
                "bom applies to CSV only.",
                code="invalid",
                fields={"bom": ["Only for results.csv."]},
            )
        qs = export.results_queryset([batch.pk], **filters)
        if self.fmt == "csv":
            stream = export.csv_stream(qs, bom=bom)
            content_type = "text/csv; charset=utf-8"
        else:
            stream = export.jsonl_stream(qs)
            content_type = "application/x-ndjson; charset=utf-8"
        response = StreamingHttpResponse(stream, content_type=content_type)
        filename = export.export_filename([batch.batch_id], self.fmt)
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response


class ResultsCSVView(ResultsExportView):
    @extend_schema(
        operation_id="batches_results_csv",
        parameters=[BATCH_ID_PARAMETER, ResultsFilterSerializer],
        responses={(200, "text/csv"): OpenApiTypes.STR, **error_responses()},
        description=RESULTS_DESCRIPTION
        + " CSV: one `variables.NAME` column per variable; cells that start "
        "with = + - @ tab or CR are prefixed with '.",
    )
    def get(self, request, batch_id: str):
        return super().get(request, batch_id)


class ResultsJSONLView(ResultsExportView):
    fmt = "jsonl"

    @extend_schema(
        operation_id="batches_results_jsonl",
        parameters=[BATCH_ID_PARAMETER, ResultsFilterSerializer],
        responses={
            (200, "application/x-ndjson"): OpenApiTypes.STR,
            **error_responses(),
        },
        description=RESULTS_DESCRIPTION + " JSON Lines: one object per line.",
    )
    def get(self, request, batch_id: str):
        return super().get(request, batch_id)


class BatchJobsViewSet(AccountScopedViewSet):
    """The jobs of one batch: list them, or import jobs in bulk."""

    serializer_class = JobSerializer
    filter_backends = [DjangoFilterBackend]
    filterset_class = JobFilter  # ?status=, ?ordering=
    queryset = Job.objects.none()  # the model, for the schema; see get_queryset
    parser_classes = [JSONParser, UploadParser, CSVBodyParser]
    pagination_class = BatchJobsPagination

    @extend_schema(
        operation_id="batches_jobs_list",
        parameters=[BATCH_ID_PARAMETER],
        responses={200: JobSerializer(many=True), **error_responses()},
    )
    def list(self, request, batch_id: str):
        batch = account_batch(self.account, batch_id)
        filterset = JobFilter(
            request.query_params, queryset=Job.objects.filter(batch_id=batch.pk)
        )
        filterset.validate()
        queryset = filterset.qs
        # The size of the list from the kept counts, and the statuses it
        # holds, so that no page counts or reads the whole batch.
        counts = batch_status_counts([batch.pk])[batch.pk]
        if wanted := filterset.form.cleaned_data.get("status"):
            wanted = normalize_status(wanted)
            counts = {s: n for s, n in counts.items() if s == wanted}
        statuses = [s for s, n in counts.items() if n]
        if JobStatus.COMPLETED in statuses:
            statuses.append(JobStatus.DONE)
        paginator = BatchJobsPagination()
        page = paginator.paginate_jobs(
            queryset,
            request,
            ordering=filterset.chosen_ordering,
            total=sum(counts.values()),
            statuses=statuses,
        )
        for job in page:
            job.batch = batch  # the same batch for every row: no join needed
        return paginator.get_paginated_response(JobSerializer(page, many=True).data)

    @extend_schema(
        operation_id="batches_jobs_import",
        parameters=[BATCH_ID_PARAMETER, IDEMPOTENCY_PARAMETER],
        request={
            "application/json": JobRowSerializer(many=True),
            "multipart/form-data": CsvUploadSerializer,
            "text/csv": OpenApiTypes.STR,
        },
        responses={201: ImportResponseSerializer, **error_responses(409, 413, 422)},
        description='Add jobs in bulk: a JSON list (or {"jobs": [...]}), a '
        "multipart upload with a CSV `file`, or a text/csv body. CSV columns: "
        "phone_number, optional scheduled_at and priority, and any other "
        "column becomes a variable. All or nothing: if any row is bad, nothing "
        "is imported and error.rows lists every bad row. Numbers are stored "
        "in E.164; a number already in the batch or repeated in the upload is "
        "a bad row. A cancelled batch takes no jobs (409).",
    )
    def create(self, request, batch_id: str):
        batch = account_batch(self.account, batch_id)
        return self.idempotent(lambda: self._import(request, batch))

    # The browsable API's forms call this one.
    def get_queryset(self):
        batch = account_batch(self.account, self.kwargs["batch_id"])
        return Job.objects.filter(batch_id=batch.pk)

    def _import(self, request, batch) -> Response:
        upload = request.FILES.get("file")
        data = request.data
        rows: Iterable[ImportRow]
        if upload is not None:
            upload.seek(0)
            rows, from_text = rows_from_csv(upload.file), True
        elif isinstance(data, list):
            rows, from_text = rows_from_json(data), False
        elif isinstance(data, dict) and set(data) == {"jobs"}:
            if not isinstance(data["jobs"], list):
                raise ApiError(
                    "jobs must be a list.",
                    code="invalid",
                    fields={"jobs": ["Must be a list."]},
                )
            rows, from_text = rows_from_json(data["jobs"]), False
        else:
            raise ApiError(
                'Send a JSON list of jobs, {"jobs": [...]}, a CSV file in the '
                "multipart field `file`, or a text/csv body.",
                code="invalid",
            )
        result = jobs_import(
            batch=batch, rows=rows, actor=self.actor(), from_text=from_text
        )
        if not result.ok:
            raise import_rows_error(result)
        return Response(
            {
                "batch_id": batch.batch_id,
                "created": result.created,
                "pending": result.pending,
                "scheduled": result.scheduled,
                "message": f"{result.created} jobs imported.",
            },
            status=status.HTTP_201_CREATED,
        )


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
