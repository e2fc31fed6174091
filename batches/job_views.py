"""A batch's jobs in the API: the list and the import at
``batches/{batch_id}/jobs``, and the results downloads ``results.csv`` and
``results.jsonl``. They belong to the batch (its URL, its account check), so
they live in ``batches``, above ``jobs`` whose imports and exports they call.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from django.http import StreamingHttpResponse
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import renderers, serializers, status
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
    error_responses,
)
from jobs import export
from jobs.filters import JobFilter
from jobs.imports import (
    ImportRow,
    jobs_import,
    rows_from_csv,
    rows_from_json,
)
from jobs.models import Job, JobStatus, normalize_status
from jobs.pagination import BatchJobsPagination
from jobs.serializers import (
    CsvUploadSerializer,
    ImportResponseSerializer,
    JobSerializer,
)
from jobs.views import CSVBodyParser, UploadParser


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
