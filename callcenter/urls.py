from __future__ import annotations

from django.contrib import admin
from django.urls import path

admin.site.site_header = "callcenter"
admin.site.site_title = "callcenter admin"

urlpatterns = [
    path("admin/", admin.site.urls),
]
