"""Liveness and readiness endpoints for load balancers and orchestrators.

``/healthz`` says the web process is alive and serving: it touches nothing
else, so a database outage never makes an orchestrator restart healthy web
processes. ``/readyz`` says the process can do its work: it runs one cheap
query on the default database and answers 503 with a JSON reason when it
cannot, so a load balancer stops sending traffic until the database is back.

Both are answered by a middleware placed first, before the host check and
the HTTPS redirect: a probe comes over plain HTTP from the load balancer,
addressed to the instance's IP rather than to a name in ALLOWED_HOSTS, and
must neither be redirected nor refused. They carry no data beyond "ok" and
the kind of failure.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import DatabaseError, connections
from django.http import HttpRequest, HttpResponse, JsonResponse

from callcenter.metrics import metrics_response

logger = logging.getLogger(__name__)

HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
METRICS_PATH = "/metrics"


def healthz() -> HttpResponse:
    return JsonResponse({"status": "ok"})


def readyz() -> HttpResponse:
    connection = connections["default"]
    try:
        # A connection that broke earlier was dropped when this request
        # started (Django's close_old_connections), so this reconnects.
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        logger.warning(
            "readiness check failed: database unreachable",
            extra={
                "action": "health.database_unreachable",
                "error": f"{type(exc).__name__}: {str(exc)[:200]}",
            },
        )
        # The client sees the kind of failure, never the server's message
        # (it can name hosts and users).
        return JsonResponse(
            {
                "status": "unavailable",
                "reason": "database unreachable",
                "error": type(exc).__name__,
            },
            status=503,
        )
    return JsonResponse({"status": "ok", "database": "ok"})


class HealthCheckMiddleware:
    """Answers GET/HEAD /healthz, /readyz and /metrics before any other middleware.

    A Prometheus scraper, like a probe, comes over plain HTTP to the
    instance's address; /metrics checks its own token or allow-list.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method in ("GET", "HEAD"):
            if request.path_info == HEALTH_PATH:
                return healthz()
            if request.path_info == READY_PATH:
                return readyz()
            if request.path_info == METRICS_PATH:
                return metrics_response(request)
        return self.get_response(request)
