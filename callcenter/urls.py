"""The project's URLconf: the admin, the dashboard, and /api/v1/ assembled
from each app's own ``api_urls`` (one ``api-v1`` namespace)."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerView,
)

from accounts import api_urls as accounts_api
from accounts.admin_login import admin_login
from batches import api_urls as batches_api
from batches import dashboard
from callcenter.api import both_slashes
from jobs import api_urls as jobs_api
from webhooks import api_urls as webhooks_api

admin.site.site_header = "callcenter"
admin.site.site_title = "callcenter admin"

api_v1 = [
    *accounts_api.urlpatterns,
    *webhooks_api.urlpatterns,
    *batches_api.urlpatterns,
    *jobs_api.urlpatterns,
    # The OpenAPI schema and its two readers.
    *both_slashes("schema", SpectacularAPIView.as_view(), "schema"),
    *both_slashes(
        "docs", SpectacularSwaggerView.as_view(url_name="api-v1:schema"), "docs"
    ),
    *both_slashes(
        "redoc", SpectacularRedocView.as_view(url_name="api-v1:schema"), "redoc"
    ),
]

urlpatterns = [
    # Before the admin's own routes: its login view, with a failure limit.
    path("admin/login/", admin_login),
    path("admin/", admin.site.urls),
    # The admin's language selector posts here (django.views.i18n.set_language).
    path("i18n/", include("django.conf.urls.i18n")),
    # REST API v1: accounts, credits, webhooks, batches, jobs, schema and docs.
    path("api/v1/", include((api_v1, "api-v1"))),
    # Staff dashboard (batches/dashboard.py).
    path("dashboard/", dashboard.dashboard_view, name="dashboard"),
    path("dashboard/data.json", dashboard.dashboard_data_view, name="dashboard-data"),
    path(
        "dashboard/batches/<int:pk>/pause",
        dashboard.dashboard_pause_view,
        name="dashboard-pause",
    ),
]
