"""Reads about batches. Views, admin and the dashboard share these."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import Count, Max, Min

from batches.job_counts import counts_are_kept, kept_counts
from batches.models import Batch
from jobs.models import COMPLETED_STATUSES, TERMINAL_STATUSES, Job, JobStatus

# `done` is folded into `completed` in every count.
REPORTED_STATUSES = [s.value for s in JobStatus if s != JobStatus.DONE]


def _empty_counts() -> dict[str, int]:
    return dict.fromkeys(REPORTED_STATUSES, 0)


def batch_status_counts(batch_ids: Iterable[int]) -> dict[int, dict[str, int]]:
    """Per-batch job counts by status, in one query for any number of batches.

    On PostgreSQL these are the counts the triggers keep (batches.job_counts):
    the cost depends on the number of batches, not on their sizes. SQLite
    counts the jobs.
    """
    ids = list(batch_ids)
    result: dict[int, dict[str, int]] = {pk: _empty_counts() for pk in ids}
    if not ids:
        return result
    rows: Iterable[tuple[int, str, int]]
    if counts_are_kept():
        rows = (
            (batch_id, status, n)
            for batch_id, by_status in kept_counts(ids).items()
            for status, n in by_status.items()
        )
    else:
        rows = (
            Job.objects.filter(batch_id__in=ids)
            .order_by()
            .values_list("batch_id", "status")
            .annotate(n=Count("id"))
        )
    for batch_id, status, n in rows:
        key = JobStatus.COMPLETED.value if status in COMPLETED_STATUSES else status
        result[batch_id][key] += n
    return result


def counts_summary(counts: dict[str, int]) -> dict[str, Any]:
    total = sum(counts.values())
    finished = sum(n for s, n in counts.items() if s in TERMINAL_STATUSES)
    return {
        "total": total,
        "finished": finished,
        "in_progress": counts.get(JobStatus.IN_PROGRESS, 0),
        "progress": round(finished / total, 4) if total else 0.0,
    }


def batch_stats(*, batch: Batch) -> dict[str, Any]:
    counts = batch_status_counts([batch.pk])[batch.pk]
    # Served by job_batch_started_idx: two index probes, not a scan.
    times = Job.objects.filter(batch_id=batch.pk).aggregate(
        first_call_at=Min("started_at"), last_call_at=Max("started_at")
    )
    return {
        "batch_id": batch.batch_id,
        "state": batch.state,
        "is_active": batch.is_active,
        "pause_reason": batch.pause_reason,
        "pause_source": batch.pause_source,
        "paused_at": batch.paused_at,
        "counts": counts,
        **counts_summary(counts),
        **times,
    }


def inactive_batches(
    *,
    batch_ids: Iterable[str] | None = None,
    inactive_before: Any = None,
) -> list[Batch]:
    """Paused, cancelled and deleted batches, oldest first.

    ``inactive_before`` keeps only the batches inactive since before that time:
    paused before it, or (never paused) cancelled or deleted before it.
    """
    from django.db.models.functions import Coalesce

    qs = Batch.all_objects.filter(is_active=False)
    if batch_ids is not None:
        qs = qs.filter(batch_id__in=list(batch_ids))
    if inactive_before is not None:
        qs = qs.annotate(
            inactive_since=Coalesce("paused_at", "cancelled_at", "deleted_at")
        ).filter(inactive_since__lte=inactive_before)
    return list(qs.order_by("id"))


def batch_sweepable_counts(batches: Iterable[Batch]) -> dict[int, int]:
    """How many jobs cancel_inactive_batch_jobs would cancel, per batch pk."""
    from batches.services import batch_sweep_statuses

    batches = list(batches)
    counts = batch_status_counts(b.pk for b in batches)
    return {
        b.pk: sum(counts[b.pk].get(s, 0) for s in batch_sweep_statuses(b))
        for b in batches
    }
