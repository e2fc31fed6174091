"""Call records: the history of dialled calls that outlives deleted jobs.

This module owns every write of ``CallRecord``. Whoever deletes job rows
calls ``call_records_keep`` in the same transaction, first, so a job is never
gone without its record; ``purge_call_records`` (the management command) is
the only way a record goes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from accounts.models import CreditEntry
from jobs.models import CallAttempt, CallRecord, Job

logger = logging.getLogger(__name__)

BATCH_DELETED_WITH_JOBS = "batch deleted with its jobs"
RETENTION_PURGE = "finished-job retention"

# A job was dialled if an attempt was spent on it, a dial was recorded, or a
# call was logged (recovery can give an attempt back after a dial).
DIALLED = Q(attempts__gt=0) | Q(dialed_at__isnull=False) | ~Q(attempt_log=[])


def _duration(log: list[dict[str, Any]]) -> float:
    return round(sum(float(e.get("duration_seconds") or 0) for e in log), 3)


def _last_outcome(job: Job) -> str:
    if isinstance(job.result, dict) and job.result.get("outcome"):
        return str(job.result["outcome"])
    log = job.attempt_log or []
    return str(log[-1].get("outcome") or "") if log else ""


def call_records_keep(*, job_ids: Iterable[int], reason: str) -> int:
    """Write a record for each of these jobs that was ever dialled; the
    others (never called) leave nothing to keep. Run it inside the
    transaction that deletes the jobs. Returns how many were written."""
    ids = list(job_ids)
    if not ids:
        return 0
    jobs = list(
        Job.objects.filter(id__in=ids)
        .filter(DIALLED)
        .select_related("batch")
        .only(
            "id",
            "account_id",
            "batch__batch_id",
            "phone_number",
            "status",
            "attempts",
            "attempt_log",
            "result",
            "dialed_at",
            "finished_at",
            "created_at",
        )
    )
    if not jobs:
        return 0
    charged = dict(
        CreditEntry.objects.filter(job_pk__in=[job.pk for job in jobs])
        .values("job_pk")
        .annotate(total=Sum("amount"))
        .values_list("job_pk", "total")
    )
    now = timezone.now()
    records = [
        CallRecord(
            job_pk=job.pk,
            account_id=job.account_id,
            batch_id=job.batch_id,
            batch_public_id=job.batch.batch_id if job.batch else "",
            phone_number=job.phone_number,
            status=job.status,
            attempts=job.attempts,
            attempt_log=job.attempt_log or [],
            last_outcome=_last_outcome(job),
            duration_seconds=_duration(job.attempt_log or []),
            cost=-(charged.get(job.pk) or 0),
            last_call_at=job.dialed_at or job.finished_at or now,
            job_created_at=job.created_at,
            deleted_at=now,
            deleted_because=reason,
        )
        for job in jobs
    ]
    CallRecord.objects.bulk_create(records, ignore_conflicts=True)
    return len(records)


def call_records_purge(
    *, older_than_days: int | None = None, chunk_size: int = 5000
) -> int:
    """Delete the records whose last call is older than the retention
    (CALL_RECORD_RETENTION_DAYS unless given), in committed chunks."""
    days = older_than_days or settings.CALL_RECORD_RETENTION_DAYS
    if days <= 0:
        raise ValueError("the retention must be a positive number of days")
    cutoff = timezone.now() - timedelta(days=days)
    total = 0
    while True:
        with transaction.atomic():
            ids = list(
                CallRecord.objects.filter(last_call_at__lt=cutoff)
                .order_by()
                .values_list("id", flat=True)[:chunk_size]
            )
            if not ids:
                break
            CallRecord.objects.filter(id__in=ids).delete()
            total += len(ids)
    # The attempts of deleted jobs go with the same retention (a job that
    # still exists keeps its attempts: they are its history).
    while True:
        with transaction.atomic():
            ids = list(
                CallAttempt.objects.filter(started_at__lt=cutoff)
                .exclude(job_id__in=Job.objects.values("id"))
                .order_by()
                .values_list("id", flat=True)[:chunk_size]
            )
            if not ids:
                break
            CallAttempt.objects.filter(id__in=ids).delete()
    logger.info(
        "call records purged",
        extra={
            "action": "call_records.purged",
            "count": total,
            "cutoff": cutoff,
            "retention_days": days,
        },
    )
    return total


def call_records_expired(*, older_than_days: int | None = None) -> int:
    """How many records ``call_records_purge`` would delete now."""
    days = older_than_days or settings.CALL_RECORD_RETENTION_DAYS
    cutoff = timezone.now() - timedelta(days=days)
    return CallRecord.objects.filter(last_call_at__lt=cutoff).count()


def call_record_add_call(*, job_pk: int, entry: dict[str, Any]) -> bool:
    """A call that ended after its job was deleted (a batch deleted with its
    jobs mid-call): add it to the job's record. Idempotent, like the job's
    own attempt log: a call already there (same worker, same dial) is not
    added twice. Returns whether the job has a record."""
    with transaction.atomic():
        record = CallRecord.objects.select_for_update().filter(job_pk=job_pk).first()
        if record is None:
            return False
        for seen in record.attempt_log:
            if seen.get("worker") == entry.get("worker") and seen.get(
                "dialed_at"
            ) == entry.get("dialed_at"):
                return True
        record.attempt_log = [
            *record.attempt_log,
            {"attempt": record.attempts, **entry},
        ]
        record.last_outcome = str(entry.get("outcome") or "")
        record.duration_seconds = _duration(record.attempt_log)
        record.save(update_fields=["attempt_log", "last_outcome", "duration_seconds"])
    return True
