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
from jobs import views as job_views

app_name = "api-v1"

B = "batches/<str:batch_id>"

urlpatterns = [
    *both_slashes("batches", views.BatchListCreateView.as_view(), "batch-list"),
    *both_slashes(B, views.BatchDetailView.as_view(), "batch-detail"),
    *both_slashes(f"{B}/pause", views.BatchPauseView.as_view(), "batch-pause"),
    *both_slashes(f"{B}/resume", views.BatchResumeView.as_view(), "batch-resume"),
    *both_slashes(f"{B}/cancel", views.BatchCancelView.as_view(), "batch-cancel"),
    *both_slashes(f"{B}/stats", views.BatchStatsView.as_view(), "batch-stats"),
    *both_slashes(f"{B}/report", views.BatchReportView.as_view(), "batch-report"),
    *both_slashes(f"{B}/jobs", job_views.BatchJobsView.as_view(), "batch-jobs"),
    path(f"{B}/results.csv", job_views.ResultsCSVView.as_view(), name="results-csv"),
    path(
        f"{B}/results.jsonl",
        job_views.ResultsJSONLView.as_view(),
        name="results-jsonl",
    ),
    *both_slashes("jobs", job_views.JobListView.as_view(), "job-list"),
    *both_slashes("jobs/<int:job_id>", job_views.JobDetailView.as_view(), "job-detail"),
    *both_slashes(
        "jobs/<int:job_id>/cancel", job_views.JobCancelView.as_view(), "job-cancel"
    ),
    *both_slashes("schema", SpectacularAPIView.as_view(), "schema"),
    *both_slashes(
        "docs", SpectacularSwaggerView.as_view(url_name="api-v1:schema"), "docs"
    ),
    *both_slashes(
        "redoc", SpectacularRedocView.as_view(url_name="api-v1:schema"), "redoc"
    ),
]
