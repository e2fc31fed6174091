"""Prometheus metrics (prometheus-client).

The metrics are defined here, once; the services that own each state change
count it. The web process serves them at ``/metrics`` (bearer token or
address allow-list, see ``metrics_response``), and each call worker on its
own port with ``run_call_worker --metrics-port``.

Under gunicorn every worker process has its own counters: gunicorn.conf.py
sets ``PROMETHEUS_MULTIPROC_DIR`` before the workers start, so each writes
its values to files there and ``/metrics`` adds up all of them. Label sets
are bounded: a label takes at most ``METRICS_MAX_LABEL_VALUES`` distinct
values per process, and any further value is counted as ``other``.
"""

from __future__ import annotations

import hmac
import os
import threading

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

JOBS_CLAIMED = Counter("callcenter_jobs_claimed", "Jobs claimed by call workers.")
CLAIM_SECONDS = Histogram(
    "callcenter_claim_seconds",
    "Latency of one claim statement (up to --concurrency jobs).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
CALLS_ENDED = Counter(
    "callcenter_calls_ended",
    "Calls recorded as ended, by outcome, batch and account (bounded).",
    ["outcome", "batch", "account"],
)
LEASE_RENEWALS = Counter("callcenter_lease_renewals", "Leases renewed by call workers.")
LEASES_RECOVERED = Counter(
    "callcenter_leases_recovered", "Expired leases recovered from lost workers."
)
PAUSES = Counter(
    "callcenter_batch_pauses",
    "Batches paused, by who paused them (api, admin, worker, system...).",
    ["source"],
)
CALLS_IN_FLIGHT = Gauge(
    "callcenter_calls_in_flight",
    "Calls a worker has claimed and not yet recorded.",
    multiprocess_mode="livesum",
)
FENCED_WRITES_REFUSED = Counter(
    "callcenter_fenced_writes_refused",
    "Worker writes about a job that changed nothing because the worker no "
    "longer holds the claim (lease recovered, job cancelled or deleted), by "
    "write: dial, renew, outcome.",
    ["write"],
)
DATABASE_ERRORS = Counter(
    "callcenter_database_errors",
    "Database errors (connection lost, server unavailable...), by process: "
    "worker, web.",
    ["process"],
)
CREDITS_RESERVED = Counter(
    "callcenter_credits_reserved",
    "Credits reserved for calls: with the claim and for each further minute.",
)
CREDITS_SETTLED = Counter(
    "callcenter_credits_settled",
    "Credits moved when calls are settled, by direction: refunded (reserved "
    "but not used) or charged (used beyond the reservation).",
    ["direction"],
)
WEBHOOK_DELIVERIES = Counter(
    "callcenter_webhook_deliveries",
    "Webhook delivery attempts, by result: succeeded, retry (failed, tried "
    "again later) or failed (given up).",
    ["result"],
)

OTHER = "other"
_seen: dict[str, set[str]] = {}
_seen_lock = threading.Lock()


def bounded(label: str, value: object) -> str:
    """``value`` as a label value, or ``other`` once ``label`` has had enough."""
    text = str(value)
    with _seen_lock:
        seen = _seen.setdefault(label, set())
        if text in seen:
            return text
        if len(seen) >= settings.METRICS_MAX_LABEL_VALUES:
            return OTHER
        seen.add(text)
        return text


def count_settled(moved: int) -> None:
    """One settlement's movement: positive is a refund, negative a charge."""
    if moved > 0:
        CREDITS_SETTLED.labels(direction="refunded").inc(moved)
    elif moved < 0:
        CREDITS_SETTLED.labels(direction="charged").inc(-moved)


class DatabaseErrorMetricsMiddleware:
    """Counts the database errors a web request raised, then lets the
    middleware above (ApiErrorMiddleware, Django) answer as before."""

    def __init__(self, get_response):  # type: ignore[no-untyped-def]
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)  # type: ignore[no-any-return]

    def process_exception(self, request: HttpRequest, exception: Exception) -> None:
        if isinstance(exception, DatabaseError):
            DATABASE_ERRORS.labels(process="web").inc()


def exposition() -> bytes:
    """Every metric of this process, or of all gunicorn workers together."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def _client_allowed(request: HttpRequest) -> bool | None:
    """True/False for a configured check, None when nothing is configured."""
    token = settings.METRICS_TOKEN
    allowed_ips = settings.METRICS_ALLOWED_IPS
    if not token and not allowed_ips:
        return None
    if token:
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            return True
    return request.META.get("REMOTE_ADDR", "") in allowed_ips


def metrics_response(request: HttpRequest) -> HttpResponse:
    allowed = _client_allowed(request)
    if allowed is None:
        # Off unless METRICS_TOKEN or METRICS_ALLOWED_IPS is set.
        return HttpResponse(status=404)
    if not allowed:
        response = HttpResponse(status=401 if settings.METRICS_TOKEN else 403)
        if settings.METRICS_TOKEN:
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
