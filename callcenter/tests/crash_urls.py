"""URLs for the error-handling tests: the real API plus views that fail."""

from __future__ import annotations

from django.urls import include, path
from rest_framework.response import Response
from rest_framework.views import APIView

from callcenter.urls import urlpatterns as project_urlpatterns


class Crash(APIView):
    def get(self, request):
        raise RuntimeError("boom")


def plain_crash(request):
    raise RuntimeError("boom")


class Fine(APIView):
    def get(self, request):
        return Response({"ok": True})


urlpatterns = [
    path("api/v1/test-crash", Crash.as_view()),
    path("api/v1/test-plain-crash", plain_crash),
    path("elsewhere/crash", plain_crash),
    path("api/v1/test-fine", Fine.as_view()),
    *project_urlpatterns,
    path("unused/", include([])),
]
