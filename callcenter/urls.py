from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "callcenter"
admin.site.site_title = "callcenter admin"

urlpatterns = [
    path("admin/", admin.site.urls),
    # REST API v1 (batches/urls.py): batches, jobs, stats, schema and docs.
    path("api/v1/", include("batches.urls")),
]
