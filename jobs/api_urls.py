"""The jobs' part of /api/v1/ (included by callcenter/urls.py): jobs,
jobs/{job_id} and its actions, and the account's do-not-call list. A batch's
jobs and its results downloads are in batches/api_urls.py."""

from __future__ import annotations

from django.urls import path

from callcenter.api import both_slashes
from callcenter.routers import OptionalSlashRouter
from jobs import dnc_views, views
from jobs.telephony_views import http_dialer_event, twilio_status

router = OptionalSlashRouter()
# jobs, jobs/{job_id} and its actions.
router.register("jobs", views.JobViewSet, basename="job")

urlpatterns = [
    *router.urls,
    # The account's do-not-call list.
    *both_slashes("account/dnc", dnc_views.AccountDncView.as_view(), "account-dnc"),
    *both_slashes(
        "account/dnc/<str:e164>",
        dnc_views.AccountDncNumberView.as_view(),
        "account-dnc-number",
    ),
    # Provider callbacks (jobs/telephony_views.py): signed, no session, not
    # in the schema (not a DRF view).
    path(
        "telephony/twilio/status/<str:token>",
        twilio_status,
        name="telephony-twilio-status",
    ),
    path(
        "telephony/http/events/<str:token>",
        http_dialer_event,
        name="telephony-http-events",
    ),
]
