"""The batch's circuit breaker (docs/architecture.md#circuit-breaker).

A batch may set ``breaker = {"window": N, "max_failure_ratio": r}``. When
more than ``r`` of its last ``N`` ended calls failed (outcome ``failed`` or
``error``: a carrier's rejection reaches the worker as one of these), the
batch is paused (the ``breaker_tripped`` signal; the batches app answers it
with ``batch_pause``, the system as the actor and a reason that names the
figures): audited, ``batch.paused`` fires, the admin shows it. Nothing
resumes it but a person (the credit top-up only resumes batches it paused
itself).

The ended calls are the batch's ``CallAttempt`` rows whose ``ended_at`` is
set, newest first. With fewer than ``N`` ended calls the failures are still
compared with ``r x N``, so one early failure does not trip a breaker of
window 20.

The breaker is read only in a worker round where a call of the batch failed,
after that outcome has committed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from django.db import connection

from jobs.dialers.base import Outcome
from jobs.models import CallAttempt, Job
from jobs.signals import breaker_tripped

FAILURES = frozenset({Outcome.FAILED, Outcome.ERROR})
ACTOR_LABEL = "circuit breaker"

CHECK_SQL = """
SELECT b.id,
       (b.breaker ->> 'window')::integer,
       (b.breaker ->> 'max_failure_ratio')::float8,
       f.failures,
       f.ended
  FROM batches_batch b
 CROSS JOIN LATERAL (
   SELECT count(*) FILTER (WHERE c.outcome IN ('failed', 'error')) AS failures,
          count(*) AS ended
     FROM (SELECT c.outcome
             FROM jobs_callattempt c
            WHERE c.batch_pk = b.id AND c.ended_at IS NOT NULL
            ORDER BY c.ended_at DESC
            LIMIT (b.breaker ->> 'window')::integer) c
 ) f
 WHERE b.id = ANY(%(ids)s::bigint[])
   AND b.is_active AND b.deleted_at IS NULL
   AND jsonb_typeof(b.breaker) = 'object'
"""


class BreakerError(ValueError):
    """A breaker setting that is not valid; the message names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def validate_breaker(value: Any) -> dict[str, Any] | None:
    """The breaker as stored, or ``BreakerError`` naming the bad field."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BreakerError(
            "breaker", 'Expected an object {"window": N, "max_failure_ratio": r}.'
        )
    unknown = sorted(set(value) - {"window", "max_failure_ratio"})
    if unknown:
        raise BreakerError(f"breaker.{unknown[0]}", "Unknown field.")
    window = value.get("window")
    if isinstance(window, bool) or not isinstance(window, int):
        raise BreakerError(
            "breaker.window", "A whole number greater than 0 is required."
        )
    if window <= 0:
        raise BreakerError("breaker.window", "Must be greater than 0.")
    if window > 10_000:
        raise BreakerError("breaker.window", "Must be at most 10000.")
    ratio = value.get("max_failure_ratio")
    if isinstance(ratio, bool) or not isinstance(ratio, int | float):
        raise BreakerError(
            "breaker.max_failure_ratio", "A number from 0 to 1 is required."
        )
    if not math.isfinite(ratio) or not 0 <= ratio <= 1:
        raise BreakerError("breaker.max_failure_ratio", "Must be from 0 to 1.")
    return {"window": window, "max_failure_ratio": float(ratio)}


def reason(*, failures: int, window: int, ratio: float) -> str:
    return (
        f"Circuit breaker: {failures} of the last {window} ended calls failed, "
        f"more than the {ratio:.0%} allowed (max_failure_ratio {ratio:g})."
    )


def check(batch_ids: Iterable[int]) -> list[int]:
    """Trip the breaker of every batch among ``batch_ids`` whose last ended
    calls failed too often (``breaker_tripped``: the batches app pauses it);
    return those batches."""
    ids = sorted(set(batch_ids))
    if not ids:
        return []
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(CHECK_SQL, {"ids": ids})
            rows = [
                (batch_id, window, ratio, failures)
                for batch_id, window, ratio, failures, _ended in cursor.fetchall()
            ]
    else:
        rows = _figures_orm(ids)
    tripped = []
    for batch_id, window, ratio, failures in rows:
        if not trips(failures=failures, window=window, ratio=ratio):
            continue
        tripped.append(batch_id)
        breaker_tripped.send(
            sender=CallAttempt,
            batch_id=batch_id,
            failures=failures,
            window=window,
            ratio=ratio,
            reason=reason(failures=failures, window=window, ratio=ratio),
        )
    return tripped


def trips(*, failures: int, window: int | None, ratio: float | None) -> bool:
    if not window or ratio is None:
        return False
    return failures > ratio * window


def _figures_orm(ids: list[int]) -> list[tuple[int, int, float, int]]:
    """The breakers' figures without PostgreSQL's JSON operators (SQLite)."""
    settings = dict(
        Job.objects.filter(
            batch_id__in=ids, batch__is_active=True, batch__breaker__isnull=False
        )
        .order_by()
        .values_list("batch_id", "batch__breaker")
        .distinct()
    )
    rows = []
    for batch_id, setting in settings.items():
        if not isinstance(setting, dict):
            continue
        window, ratio = setting.get("window"), setting.get("max_failure_ratio")
        if not window or ratio is None:
            continue
        outcomes = list(
            CallAttempt.objects.filter(batch_pk=batch_id, ended_at__isnull=False)
            .order_by("-ended_at")
            .values_list("outcome", flat=True)[:window]
        )
        failures = sum(1 for outcome in outcomes if outcome in FAILURES)
        rows.append((batch_id, window, ratio, failures))
    return rows
