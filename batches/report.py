"""The batch report: how a campaign went, and when it will end.

Read by ``GET /api/v1/batches/{id}/report`` and the batch's admin page
(docs/api.md, "Batch report"). Calls are the entries of the jobs' attempt
logs, one per call placed; on PostgreSQL they are aggregated in SQL, on
SQLite in Python. Status counts come from ``batch_status_counts``.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, Subquery, Sum
from django.db.models.fields.json import KT
from django.db.models.functions import TruncHour
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts.models import CreditEntry
from batches.models import Batch
from batches.selectors import batch_status_counts, counts_summary
from jobs.models import TERMINAL_STATUSES, Job, JobStatus

# Outcomes that reached a person or a voicemail: what the answer rate counts.
ANSWERED_OUTCOMES = ("answered", "voicemail")
RATE_WINDOW = timedelta(hours=1)

WAITING_REASONS = {
    JobStatus.PENDING: gettext_lazy("ready; waits for a free worker"),
    JobStatus.SCHEDULED: gettext_lazy("waits for its scheduled time"),
    JobStatus.IN_PROGRESS: gettext_lazy("a call is in progress"),
    JobStatus.SUSPENDED: gettext_lazy("the account is out of credits"),
}

USE_SQL = True  # PostgreSQL aggregates the attempt logs; tests flip it.

CALLS_SQL = """
SELECT date_trunc('hour', (e ->> 'started_at')::timestamptz) AS hour,
       count(*) AS calls,
       count(*) FILTER (WHERE e ->> 'outcome' = ANY(%(answered)s)) AS answered
  FROM jobs_job j, jsonb_array_elements(j.attempt_log) AS e
 WHERE j.batch_id = %(batch)s AND jsonb_typeof(j.attempt_log) = 'array'
   AND e ->> 'started_at' IS NOT NULL
 GROUP BY 1 ORDER BY 1
"""

DURATION_SQL = """
SELECT count(*),
       avg((e ->> 'duration_seconds')::float8),
       percentile_cont(0.9) WITHIN GROUP (ORDER BY (e ->> 'duration_seconds')::float8)
  FROM jobs_job j, jsonb_array_elements(j.attempt_log) AS e
 WHERE j.batch_id = %(batch)s AND jsonb_typeof(j.attempt_log) = 'array'
   AND jsonb_typeof(e -> 'duration_seconds') = 'number'
"""


def _calls_sql(batch: Batch) -> tuple[list[tuple[datetime, int, int]], dict]:
    params: dict[str, Any] = {"batch": batch.pk, "answered": list(ANSWERED_OUTCOMES)}
    with connection.cursor() as cursor:
        cursor.execute(CALLS_SQL, params)
        hours = [(h, int(c), int(a)) for h, c, a in cursor.fetchall()]
        cursor.execute(DURATION_SQL, params)
        n, avg, p90 = cursor.fetchone()
    return hours, {"calls": int(n), "average": avg, "p90": p90}


def _nearest_rank_p90(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    # percentile_cont: linear interpolation between the closest ranks.
    rank = 0.9 * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _streamed(values: Any) -> Iterable[Any]:
    """``values.iterator()`` in a transaction, so that its server-side cursor
    is a plain one: outside a transaction Django declares it WITH HOLD, which
    a transaction-mode pooler cannot keep between statements (docs/deploy.md)."""
    with transaction.atomic():
        yield from values.iterator(chunk_size=2000)


def _calls_python(batch: Batch) -> tuple[list[tuple[datetime, int, int]], dict]:
    per_hour: dict[datetime, list[int]] = defaultdict(lambda: [0, 0])
    durations: list[float] = []
    logs = Job.objects.filter(batch_id=batch.pk, attempts__gt=0).values_list(
        "attempt_log", flat=True
    )
    for log in _streamed(logs):
        for entry in log if isinstance(log, list) else []:
            if not isinstance(entry, dict):
                continue
            duration = entry.get("duration_seconds")
            if isinstance(duration, int | float) and not isinstance(duration, bool):
                durations.append(float(duration))
            started = parse_datetime(str(entry.get("started_at") or ""))
            if started is None:
                continue
            hour = started.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
            per_hour[hour][0] += 1
            per_hour[hour][1] += entry.get("outcome") in ANSWERED_OUTCOMES
    hours = [(h, c, a) for h, (c, a) in sorted(per_hour.items())]
    average = sum(durations) / len(durations) if durations else None
    return hours, {
        "calls": len(durations),
        "average": average,
        "p90": _nearest_rank_p90(durations),
    }


def _outcomes_over_time(batch: Batch) -> list[dict[str, Any]]:
    rows = (
        Job.objects.filter(batch_id=batch.pk, finished_at__isnull=False)
        .annotate(hour=TruncHour("finished_at"), outcome=KT("result__outcome"))
        .order_by()
        .values_list("hour", "outcome")
        .annotate(n=Count("id"))
    )
    by_hour: dict[datetime, dict[str, int]] = defaultdict(dict)
    for hour, outcome, n in rows:
        by_hour[hour][outcome or "none"] = by_hour[hour].get(outcome or "none", 0) + n
    return [{"hour": h, "outcomes": by_hour[h]} for h in sorted(by_hour)]


def _attempts_per_contact(batch: Batch) -> dict[str, Any]:
    rows = dict(
        Job.objects.filter(batch_id=batch.pk)
        .order_by()
        .values_list("attempts")
        .annotate(n=Count("id"))
        .values_list("attempts", "n")
    )
    called = {k: v for k, v in rows.items() if k > 0}
    contacts = sum(called.values())
    return {
        "distribution": {str(k): rows[k] for k in sorted(rows)},
        "average": round(sum(k * v for k, v in called.items()) / contacts, 3)
        if contacts
        else None,
    }


def _cost(batch: Batch) -> int:
    total = CreditEntry.objects.filter(
        job_pk__in=Subquery(Job.objects.filter(batch_id=batch.pk).values("pk"))
    ).aggregate(total=Sum("amount"))["total"]
    return -int(total) if total else 0


def _waiting(batch: Batch, counts: dict[str, int]) -> list[dict[str, Any]]:
    rows = []
    for status, reason in WAITING_REASONS.items():
        n = counts.get(status, 0)
        if not n:
            continue
        text = str(reason)
        if batch.cancelled_at and status != JobStatus.IN_PROGRESS:
            text = _("the batch is cancelled")
        elif not batch.is_active and status in (
            JobStatus.PENDING,
            JobStatus.SCHEDULED,
        ):
            text = _("the batch is paused") + (
                f" ({batch.pause_reason})" if batch.pause_reason else ""
            )
        rows.append({"status": str(status), "count": n, "reason": text})
    return rows


def _explain_codes(batch: Batch) -> list[dict[str, Any]]:
    """Why the remaining contacts wait (or were stopped), by explain code,
    most frequent first (jobs/explain.py's batch summary)."""
    from jobs.explain import LABELS, summary_counts

    counts = summary_counts(batch)
    return [
        {"code": code, "count": n, "reason": str(LABELS.get(code, code))}
        for code, n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    ]


def finished_per_hour(batch_ids: Iterable[int], *, now: datetime) -> dict[int, float]:
    """Jobs of each batch that reached a terminal status in the last hour
    (one grouped query over the finished_at index)."""
    ids = list(batch_ids)
    rows = dict(
        Job.objects.filter(
            batch_id__in=ids,
            status__in=TERMINAL_STATUSES,
            finished_at__gte=now - RATE_WINDOW,
        )
        .order_by()
        .values_list("batch_id")
        .annotate(n=Count("id"))
        .values_list("batch_id", "n")
    )
    hours = RATE_WINDOW.total_seconds() / 3600
    return {pk: rows.get(pk, 0) / hours for pk in ids}


def estimate(
    *, remaining: int, per_hour: float, state: str, now: datetime
) -> dict[str, Any]:
    """When the rest would be done at ``per_hour``; or why there is no date."""
    eta: dict[str, Any] = {"at": None, "seconds": None, "why_not": ""}
    if remaining == 0:
        eta["why_not"] = _("nothing left to call")
    elif state == Batch.State.PAUSED:
        eta["why_not"] = _("paused")
    elif state == Batch.State.CANCELLED:
        eta["why_not"] = _("cancelled")
    elif per_hour == 0:
        eta["why_not"] = _("no job finished in the last hour")
    else:
        seconds = remaining / per_hour * 3600
        eta.update(at=now + timedelta(seconds=seconds), seconds=round(seconds))
    return eta


def batch_report(*, batch: Batch, now: datetime | None = None) -> dict[str, Any]:
    now = now or timezone.now()
    counts = batch_status_counts([batch.pk])[batch.pk]
    summary = counts_summary(counts)
    use_sql = USE_SQL and connection.vendor == "postgresql"
    hours, durations = (_calls_sql if use_sql else _calls_python)(batch)
    calls = sum(c for _, c, _ in hours)
    answered = sum(a for _, _, a in hours)
    remaining = summary["total"] - summary["finished"]
    rate = finished_per_hour([batch.pk], now=now)[batch.pk]
    eta = estimate(remaining=remaining, per_hour=rate, state=batch.state, now=now)
    return {
        "batch_id": batch.batch_id,
        "name": batch.name,
        "state": batch.state,
        "generated_at": now,
        "counts": counts,
        **summary,
        "remaining": remaining,
        "calls": calls,
        "answered_calls": answered,
        "answer_rate": round(answered / calls, 4) if calls else None,
        "calls_per_hour": [{"hour": h, "calls": c, "answered": a} for h, c, a in hours],
        "outcomes_over_time": _outcomes_over_time(batch),
        "duration_seconds": {
            "calls": durations["calls"],
            "average": _round(durations["average"]),
            "p90": _round(durations["p90"]),
        },
        "attempts_per_contact": _attempts_per_contact(batch),
        "cost": _cost(batch),
        "waiting": _waiting(batch, counts),
        "explain_codes": _explain_codes(batch),
        "rate_per_hour": rate,
        "eta": eta,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 2)


def outcome_names(report: dict[str, Any]) -> list[str]:
    names: Counter[str] = Counter()
    for row in report["outcomes_over_time"]:
        names.update(row["outcomes"])
    return [name for name, _ in names.most_common()]
