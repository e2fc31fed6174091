from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from accounts.admin_login import admin_login
from accounts.views import AccountListView
from batches import dashboard
from callcenter.api import both_slashes

admin.site.site_header = "callcenter"
admin.site.site_title = "callcenter admin"

urlpatterns = [
    # Before the admin's own routes: its login view, with a failure limit.
    path("admin/login/", admin_login),
    path("admin/", admin.site.urls),
    # The admin's language selector posts here (django.views.i18n.set_language).
    path("i18n/", include("django.conf.urls.i18n")),
    # Staff: POST /api/v1/accounts creates an account (accounts/views.py).
    *both_slashes("api/v1/accounts", AccountListView.as_view(), "accounts"),
    # Credits (accounts/urls.py): GET/POST /api/v1/account/credits.
    path("api/v1/account/", include("accounts.urls")),
    # REST API v1 (batches/urls.py): batches, jobs, stats, schema and docs.
    path("api/v1/", include("batches.urls")),
    # Staff dashboard (batches/dashboard.py).
    path("dashboard/", dashboard.dashboard_view, name="dashboard"),
    path("dashboard/data.json", dashboard.dashboard_data_view, name="dashboard-data"),
    path(
        "dashboard/batches/<int:pk>/pause",
        dashboard.dashboard_pause_view,
        name="dashboard-pause",
    ),
]
