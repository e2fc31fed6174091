"""The batches' part of /api/v1/ (included by callcenter/urls.py): batches,
batches/{batch_id} and its pause, resume, cancel, stats and report; a batch's
jobs (list and import) and its results downloads; the operations (background
sweeps) and their progress."""

from __future__ import annotations

from django.urls import path

from batches import job_views, views
from callcenter.routers import OptionalSlashRouter

B = "batches/<str:batch_id>"

router = OptionalSlashRouter()
router.register("batches", views.BatchViewSet, basename="batch")
# operations, operations/{operation_id}: background sweeps and their progress.
router.register("operations", views.OperationViewSet, basename="operation")
# batches/{batch_id}/jobs: list and import.
router.register(
    r"batches/(?P<batch_id>[^/]+)/jobs",
    job_views.BatchJobsViewSet,
    basename="batch-jobs",
)

urlpatterns = [
    *router.urls,
    # Downloads named like files: one form each, as before.
    path(f"{B}/results.csv", job_views.ResultsCSVView.as_view(), name="results-csv"),
    path(
        f"{B}/results.jsonl",
        job_views.ResultsJSONLView.as_view(),
        name="results-jsonl",
    ),
]
