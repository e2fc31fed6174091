"""The staff dashboard at /dashboard/: live batches, calls in progress,
workers seen lately and calls per minute. The page renders once; a small
script then polls the JSON view every few seconds.

Each read is one query over an index, so a dashboard left open costs the
database the same whatever the size of the job history.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import permission_required
from django.db.models import Count, Max, Q
from django.db.models.functions import Coalesce, TruncMinute
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from batches import services
from batches.models import Batch
from batches.report import estimate, finished_per_hour
from batches.selectors import batch_status_counts, counts_summary
from callcenter.actor import Actor, Source
from callcenter.exceptions import DomainError
from jobs.models import Job, JobStatus

# It shows every account's batches: the same permission as the batch list.
VIEW_PERMISSION = "batches.view_batch"
PAUSE_PERMISSION = "batches.change_batch"
REFRESH_SECONDS = 3
WORKER_WINDOW = timedelta(minutes=1)
CHART_MINUTES = 60
MAX_BATCHES = 50


def live_batches(
    limit: int = MAX_BATCHES, *, now: datetime | None = None
) -> list[dict[str, Any]]:
    """Active and paused batches, with their progress, the rate of the last
    hour and the estimated completion at that rate (three queries)."""
    now = now or timezone.now()
    batches = list(
        Batch.objects.filter(cancelled_at__isnull=True, completed_at__isnull=True)
        .select_related("account")
        .order_by("-is_active", "-priority", "-created_at")[:limit]
    )
    counts = batch_status_counts(b.pk for b in batches)
    rates = finished_per_hour((b.pk for b in batches), now=now)
    rows = [
        {
            "id": b.pk,
            "batch_id": b.batch_id,
            "name": b.name,
            "account": b.account.name,
            "priority": b.priority,
            "state": b.state,
            "pause_reason": b.pause_reason,
            "url": reverse("admin:batches_batch_change", args=[b.pk]),
            "pause_url": reverse("dashboard-pause", args=[b.pk]),
            "counts": counts[b.pk],
            **counts_summary(counts[b.pk]),
            "rate_per_hour": round(rates[b.pk], 1),
        }
        for b in batches
    ]
    for row in rows:
        row["eta"] = estimate(
            remaining=row["total"] - row["finished"],
            per_hour=row["rate_per_hour"],
            state=row["state"],
            now=now,
        )
    return rows


def workers_seen(*, now: datetime, window: timedelta = WORKER_WINDOW) -> list[dict]:
    """Workers that hold a live lease, or finished a job within the window.

    Both halves are served by partial indexes (job_lease_idx, job_finished_idx),
    not by a scan of the history.
    """
    since = now - window
    rows = (
        Job.objects.filter(
            Q(status=JobStatus.IN_PROGRESS, lease_expires_at__gt=now)
            | Q(finished_at__gte=since)
        )
        .exclude(claimed_by="")
        .order_by()
        .values("claimed_by")
        .annotate(
            last_seen=Max(Coalesce("finished_at", "claimed_at")),
            in_progress=Count("id", filter=Q(status=JobStatus.IN_PROGRESS)),
        )
        .order_by("claimed_by")
    )
    return [
        {
            "worker_id": r["claimed_by"],
            "last_seen": r["last_seen"],
            "in_progress": r["in_progress"],
        }
        for r in rows
    ]


def calls_per_minute(
    *, now: datetime, minutes: int = CHART_MINUTES
) -> list[dict[str, Any]]:
    """Calls that ended in each of the last ``minutes`` minutes, oldest first.

    Only calls that were placed (``started_at`` set): a sweep that cancels a
    backlog must not look like a burst of calls.
    """
    end = now.replace(second=0, microsecond=0)
    start = end - timedelta(minutes=minutes - 1)
    rows = dict(
        Job.objects.filter(finished_at__gte=start, started_at__isnull=False)
        .annotate(minute=TruncMinute("finished_at"))
        .order_by()
        .values("minute")
        .annotate(n=Count("id"))
        .values_list("minute", "n")
    )
    buckets = [start + timedelta(minutes=i) for i in range(minutes)]
    return [{"minute": m, "calls": rows.get(m, 0)} for m in buckets]


def dashboard_data(*, now: datetime | None = None) -> dict[str, Any]:
    now = now or timezone.now()
    batches = live_batches(now=now)
    workers = workers_seen(now=now)
    chart = calls_per_minute(now=now)
    in_progress = Job.objects.filter(status=JobStatus.IN_PROGRESS).count()
    return {
        "generated_at": now,
        "calls_in_progress": in_progress,
        "workers": workers,
        "workers_count": len(workers),
        "batches": batches,
        "active_batches": sum(1 for b in batches if b["state"] == Batch.State.ACTIVE),
        "paused_batches": sum(1 for b in batches if b["state"] == Batch.State.PAUSED),
        "calls_per_minute": chart,
        "calls_last_hour": sum(b["calls"] for b in chart),
        "refresh_seconds": REFRESH_SECONDS,
    }


@staff_member_required
@permission_required(VIEW_PERMISSION, raise_exception=True)
@never_cache
def dashboard_view(request: HttpRequest) -> HttpResponse:
    context = {
        **admin.site.each_context(request),
        "title": _("Dashboard"),
        "data": dashboard_data(),
        "data_url": reverse("dashboard-data"),
        "refresh_ms": REFRESH_SECONDS * 1000,
        "can_pause": request.user.has_perm(PAUSE_PERMISSION),
        "texts": script_texts(),
    }
    return TemplateResponse(request, "dashboard/index.html", context)


@staff_member_required
@permission_required(VIEW_PERMISSION, raise_exception=True)
@never_cache
def dashboard_data_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse(dashboard_data())


@staff_member_required
@permission_required(PAUSE_PERMISSION, raise_exception=True)
@require_POST
def dashboard_pause_view(request: HttpRequest, pk: int) -> JsonResponse:
    """Pause from a dashboard row (the script confirms first): the pause
    service, audited as an admin pause; the answer says what it means now."""
    batch = get_object_or_404(Batch, pk=pk)
    try:
        changed = services.batch_pause(
            batch=batch,
            actor=Actor.from_request(request, Source.ADMIN),
            reason=request.POST.get("reason", "").strip()[:255],
        )
    except DomainError as exc:
        return JsonResponse(
            {"error": {"code": exc.code, "message": exc.message}},
            status=exc.status_code,
        )
    finishing = batch_status_counts([batch.pk])[batch.pk][JobStatus.IN_PROGRESS]
    return JsonResponse(
        {
            "batch_id": batch.batch_id,
            "changed": changed,
            "in_progress": finishing,
            "message": pause_effect(finishing),
        }
    )


def pause_effect(finishing: int) -> str:
    """What a pause means for the batch right now (the dashboard says it)."""
    if finishing:
        return ngettext(
            "Paused: no new calls; %(n)d call in progress finishing.",
            "Paused: no new calls; %(n)d calls in progress finishing.",
            finishing,
        ) % {"n": finishing}
    return _("Paused: no new calls; no call in progress.")


def script_texts() -> dict[str, str]:
    """The dashboard script's words, in the request's language; %(name)s
    marks where the script puts a value."""
    return {
        "active": _("active"),
        "paused": _("paused"),
        "pause": _("Pause"),
        "effect_finishing": _("no new calls · %(n)s finishing"),
        "effect_none": _("no new calls · none in progress"),
        "confirm": _(
            "Pause “%(name)s”? No new call will start; the %(n)s call(s) in "
            "progress finish."
        ),
        "pause_failed": _("Could not pause “%(name)s”: %(error)s"),
        "per_hour": _("%(n)s/h"),
        "peak": _("peak %(n)s/min"),
        "calls_at": _("%(time)s: %(n)s calls"),
    }
