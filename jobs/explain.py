"""Why a job is (not) being called: ``GET /api/v1/jobs/{id}/explain``, the
job's admin page, and the batch's summary of reasons.

``explain(job)`` asks every explainer of the registry; each returns the
reasons that hold now (``jobs.rules.Reason``: code, detail, until). A job is
callable when none does; it then says how many jobs are ahead of it.

The registry is open: the gate rules' ``explain`` functions (jobs/rules/)
are in it, after the explainers here. Another module adds one with
``register(fn)`` (``fn(job, now) -> list[Reason]``), e.g. a calling window's
``outside_window`` or a cap's ``frequency_cap``; ``summary_counts`` takes
an extra ``SUMMARIES`` entry in the same way for the batch page.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db.models import Count, Exists, OuterRef, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from jobs.models import NON_TERMINAL_STATUSES, DncEntry, Job, JobStatus
from jobs.rules import Reason, rules

Explainer = Callable[[Job, datetime], list[Reason]]


def _finished(job: Job, now: datetime) -> list[Reason]:
    if job.status in NON_TERMINAL_STATUSES:
        return []
    detail = f"The job is {job.status}"
    if job.stop_code:
        detail += f" ({job.stop_code})"
    if job.cancel_reason:
        detail += f": {job.cancel_reason}"
    return [Reason("finished", detail + ".", None)]


def _batch(job: Job, now: datetime) -> list[Reason]:
    batch = job.batch if job.batch_id else None
    if batch is None:
        return []
    if batch.cancelled_at or batch.deleted_at:
        when = batch.cancelled_at or batch.deleted_at
        assert when is not None
        return [
            Reason(
                "batch_cancelled",
                f"The batch was {batch.state} at {when.isoformat()}.",
            )
        ]
    if not batch.is_active:
        event = (
            batch.events.filter(action="paused").order_by("-created_at", "-id").first()
        )
        who = event.actor_label if event and event.actor_label else "unknown"
        source = batch.pause_source or (event.source if event else "")
        since = batch.paused_at.isoformat() if batch.paused_at else "unknown"
        detail = f"The batch is paused since {since} by {who} (source: {source})"
        if batch.pause_reason:
            detail += f": {batch.pause_reason}"
        return [Reason("batch_paused", detail + ".")]
    return []


def _status(job: Job, now: datetime) -> list[Reason]:
    if job.status == JobStatus.SCHEDULED:
        if job.attempts:
            return [
                Reason(
                    "retry_backoff",
                    f"Attempt {job.attempts} did not reach anyone; the next one "
                    "waits for the retry delay.",
                    job.scheduled_at,
                )
            ]
        return [Reason("scheduled", "The job is scheduled.", job.scheduled_at)]
    if job.status == JobStatus.SUSPENDED:
        return [
            Reason(
                "no_credits",
                "The account ran out of credits; the job resumes when credits "
                "are added.",
            )
        ]
    if job.status == JobStatus.IN_PROGRESS:
        return [
            Reason(
                "in_progress",
                f"The job is being called by {job.claimed_by or 'a worker'}.",
            )
        ]
    return []


def _credits(job: Job, now: datetime) -> list[Reason]:
    from accounts.credits import call_reservation

    if job.status != JobStatus.PENDING:
        return []
    needed = call_reservation()
    if needed and job.account.credits < needed:
        return [
            Reason(
                "no_credits",
                f"The account has {job.account.credits} credits; a call needs "
                f"{needed}.",
            )
        ]
    return []


def _caps(job: Job, now: datetime) -> list[Reason]:
    """frequency_cap (until when) and concurrency_cap (jobs/caps.py)."""
    from jobs import caps

    if job.status not in (JobStatus.PENDING, JobStatus.SCHEDULED):
        return []
    return caps.explain(job, now)


EXPLAINERS: list[Explainer] = [_finished, _batch, _status, _credits, _caps]


def register(explainer: Explainer) -> Explainer:
    """Add an explainer to the registry (usable as a decorator)."""
    if explainer not in EXPLAINERS:
        EXPLAINERS.append(explainer)
    return explainer


def explainers() -> list[Explainer]:
    found = list(EXPLAINERS)
    for module in rules():
        fn = getattr(module, "explain", None)
        if fn is not None and fn not in found:
            found.append(fn)
    return found


def jobs_ahead(job: Job) -> int:
    """The pending jobs a claim takes before this one in its batch (or among
    the one-off jobs): higher priority, or the same and older. One index
    range count on the claim index."""
    pending = Job.objects.filter(status=JobStatus.PENDING)
    if job.batch_id is None:
        pending = pending.filter(batch__isnull=True)
    else:
        pending = pending.filter(batch_id=job.batch_id)
    return pending.filter(
        Q(priority__gt=job.priority) | Q(priority=job.priority, pk__lt=job.pk)
    ).count()


def explain(job: Job, *, now: datetime | None = None) -> dict[str, Any]:
    """{"callable": bool, "reasons": [{"code", "detail", "until"}]}, plus
    ``jobs_ahead`` for a callable job."""
    now = now or timezone.now()
    if job.status in NON_TERMINAL_STATUSES:
        # Finished jobs need no other explainer: they are done.
        reasons = [r for fn in explainers() for r in fn(job, now)]
    else:
        reasons = _finished(job, now)
    if reasons:
        return {"callable": False, "reasons": [r.as_dict() for r in reasons]}
    ahead = jobs_ahead(job)
    return {
        "callable": True,
        "jobs_ahead": ahead,
        "reasons": [
            Reason(
                "callable",
                f"The job is waiting for a worker; {ahead} job(s) of its "
                "batch are ahead of it.",
            ).as_dict()
        ],
    }


# --- the batch's summary ----------------------------------------------------

SummaryCounter = Callable[[Any], dict[str, int]]


def _summary_base(batch: Any) -> dict[str, int]:
    jobs = Job.objects.filter(batch_id=batch.pk)
    found: dict[str, int] = {}
    open_jobs = jobs.filter(status__in=NON_TERMINAL_STATUSES)
    if batch.cancelled_at or batch.deleted_at:
        found["batch_cancelled"] = open_jobs.count()
    elif not batch.is_active:
        found["batch_paused"] = open_jobs.filter(
            status__in=[JobStatus.PENDING, JobStatus.SCHEDULED]
        ).count()
    counts = jobs.aggregate(
        scheduled=Count("pk", filter=Q(status=JobStatus.SCHEDULED, attempts=0)),
        retry_backoff=Count("pk", filter=Q(status=JobStatus.SCHEDULED, attempts__gt=0)),
        no_credits=Count("pk", filter=Q(status=JobStatus.SUSPENDED)),
        in_progress=Count("pk", filter=Q(status=JobStatus.IN_PROGRESS)),
    )
    found.update({code: n for code, n in counts.items() if n})
    listed = DncEntry.objects.filter(
        Q(account_id=batch.account_id) | Q(account__isnull=True),
        phone_number=OuterRef("phone_number"),
    )
    waiting = open_jobs.exclude(status=JobStatus.IN_PROGRESS)
    on_dnc = waiting.filter(Exists(listed)).count()
    if on_dnc:
        found["dnc"] = on_dnc
    if batch.voice in ("ai", "prerecorded"):
        no_consent = waiting.filter(consent_at__isnull=True).count()
        if no_consent:
            found["no_consent"] = no_consent
    return found


def _summary_stopped(batch: Any) -> dict[str, int]:
    """Jobs that were stopped for good, by their stop code."""
    rows = (
        Job.objects.filter(batch_id=batch.pk, status=JobStatus.CANCELLED)
        .exclude(stop_code="")
        .values_list("stop_code")
        .annotate(n=Count("pk"))
    )
    return {f"stopped:{code}": n for code, n in rows}


SUMMARIES: list[SummaryCounter] = [_summary_base, _summary_stopped]

LABELS = {
    "batch_cancelled": _("not called: the batch is cancelled"),
    "batch_paused": _("waiting: the batch is paused"),
    "scheduled": _("scheduled for later"),
    "retry_backoff": _("waiting for a retry"),
    "no_credits": _("suspended: no credits"),
    "in_progress": _("being called"),
    "dnc": _("on a do-not-call list"),
    "no_consent": _("without the consent their voice needs"),
    "stopped:dnc": _("cancelled: on a do-not-call list"),
    "stopped:opt_out": _("cancelled: opted out"),
    "stopped:no_consent": _("cancelled: no consent"),
    "stopped:number_not_allowed": _("cancelled: number not allowed"),
}


def summary_counts(batch: Any) -> dict[str, int]:
    """How many of the batch's jobs each reason holds for, by code."""
    found: dict[str, int] = {}
    for counter in SUMMARIES:
        found.update(counter(batch))
    return found


def summary_text(batch: Any) -> str:
    """ "35 on a do-not-call list, 12 waiting for a retry, …" """
    counts = summary_counts(batch)
    return ", ".join(
        f"{n:,} {LABELS.get(code, code)}"
        for code, n in sorted(counts.items(), key=lambda item: -item[1])
    )
