"""The jobs' part of /api/v1/ (included by callcenter/urls.py): a batch's
jobs (list and import), jobs/{job_id} and its actions, and the results
downloads."""

from __future__ import annotations

from django.urls import path

from callcenter.api import both_slashes
from callcenter.routers import OptionalSlashRouter
from jobs import dnc_views, views

B = "batches/<str:batch_id>"

router = OptionalSlashRouter()
# batches/{batch_id}/jobs: list and import.
router.register(
    r"batches/(?P<batch_id>[^/]+)/jobs", views.BatchJobsViewSet, basename="batch-jobs"
)
# jobs, jobs/{job_id} and its actions.
router.register("jobs", views.JobViewSet, basename="job")

urlpatterns = [
    *router.urls,
    # Downloads named like files: one form each, as before.
    path(f"{B}/results.csv", views.ResultsCSVView.as_view(), name="results-csv"),
    path(f"{B}/results.jsonl", views.ResultsJSONLView.as_view(), name="results-jsonl"),
    # The account's do-not-call list.
    *both_slashes("account/dnc", dnc_views.AccountDncView.as_view(), "account-dnc"),
    *both_slashes(
        "account/dnc/<str:e164>",
        dnc_views.AccountDncNumberView.as_view(),
        "account-dnc-number",
    ),
]
