"""/api/v1/: every route answers with and without a trailing slash."""

from __future__ import annotations

from django.urls import path
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerView,
)

from batches import views
from callcenter.api import both_slashes
from callcenter.routers import OptionalSlashRouter
from jobs import views as job_views

app_name = "api-v1"

B = "batches/<str:batch_id>"

router = OptionalSlashRouter()
# batches, batches/{batch_id}, and its pause, resume, cancel, stats and report.
router.register("batches", views.BatchViewSet, basename="batch")
# batches/{batch_id}/jobs: list and import.
router.register(
    r"batches/(?P<batch_id>[^/]+)/jobs",
    job_views.BatchJobsViewSet,
    basename="batch-jobs",
)
# jobs, jobs/{job_id} and its cancel.
router.register("jobs", job_views.JobViewSet, basename="job")

urlpatterns = [
    *router.urls,
    # Downloads named like files: one form each, as before.
    path(f"{B}/results.csv", job_views.ResultsCSVView.as_view(), name="results-csv"),
    path(
        f"{B}/results.jsonl",
        job_views.ResultsJSONLView.as_view(),
        name="results-jsonl",
    ),
    *both_slashes("schema", SpectacularAPIView.as_view(), "schema"),
    *both_slashes(
        "docs", SpectacularSwaggerView.as_view(url_name="api-v1:schema"), "docs"
    ),
    *both_slashes(
        "redoc", SpectacularRedocView.as_view(url_name="api-v1:schema"), "redoc"
    ),
]
