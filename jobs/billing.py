"""The billing seam between the call worker and account credits.

The worker calls ``reserve_call`` after a claim and before dialling, and
``settle_call`` after the call ended. The credits issue fills these bodies in
(reserve a call's cost, charge its real duration); until then every account
may call and nothing is charged.
"""

from __future__ import annotations

import logging

from django.db.models.functions import Now

from jobs.models import Job, JobStatus

logger = logging.getLogger(__name__)


def reserve_call(job: Job) -> bool:
    """May ``job``'s account pay for this call? False means: do not dial.

    The worker then hands the job back with ``suspend_job``.
    """
    return True


def settle_call(job: Job, *, duration_seconds: float, outcome: str) -> None:
    """Charge the account for a call that ended (no-op until credits exist)."""


def suspend_job(job: Job, *, worker_id: str) -> bool:
    """Put a claimed, undialled job in ``suspended``: its account cannot pay.

    Conditional on the worker still holding it; returns whether it did.
    """
    updated = Job.objects.filter(
        pk=job.pk,
        status=JobStatus.IN_PROGRESS,
        claimed_by=worker_id,
        dialed_at__isnull=True,
    ).update(
        status=JobStatus.SUSPENDED,
        claimed_by="",
        claimed_at=None,
        lease_expires_at=None,
        updated_at=Now(),
    )
    if updated:
        job.status = JobStatus.SUSPENDED
        logger.info(
            "job suspended: account cannot pay",
            extra={
                "action": "job.suspended",
                "job_id": job.pk,
                "batch_id": job.batch_id,
                "worker_id": worker_id,
            },
        )
    return bool(updated)
