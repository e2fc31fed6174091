"""Periodic maintenance, defined in code and written to django-q2's Schedule
table after every ``migrate`` (a post_migrate receiver), so no one ever has
to create a schedule by hand and re-running migrate changes nothing.

Every task is safe to run late, twice, or from several clusters at once:
each one is a conditional, idempotent sweep.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

PREFIX = "callcenter: "


@dataclass(frozen=True)
class Periodic:
    name: str
    func: str
    minutes: int
    # The django-q2 queue (cluster) that runs it; None is the default one.
    cluster: str | None = None


def periodic_tasks() -> list[Periodic]:
    tasks = [
        Periodic(
            "deliver due webhooks",
            "webhooks.tasks.deliver_due",
            1,
            cluster=settings.Q_WEBHOOKS_CLUSTER,
        ),
        # The workers recover expired leases themselves; this covers the
        # hours when none runs, so no job sits in_progress indefinitely.
        Periodic("recover expired leases", "jobs.maintenance.recover_leases", 1),
        Periodic(
            "reconcile batch completions", "batches.tasks.reconcile_completions", 5
        ),
        Periodic("reconcile credits", "accounts.tasks.reconcile_credits", 5),
        # Background sweeps (cancel/delete of big batches) that a kill or a
        # restart interrupted carry on by themselves.
        Periodic(
            "resume interrupted operations", "batches.tasks.resume_operations", 1
        ),
        Periodic(
            "purge expired idempotency keys",
            "accounts.tasks.purge_idempotency_keys",
            60,
        ),
    ]
    if settings.JOB_COUNTS_CHECK_MINUTES:
        tasks.append(
            Periodic(
                "verify batch job counts",
                "batches.tasks.verify_job_counts",
                settings.JOB_COUNTS_CHECK_MINUTES,
            )
        )
    if settings.TWILIO_ACCOUNT_SID or settings.HTTP_DIALER_URL:
        # Calls whose final status callback never came (jobs/reconcile.py).
        tasks.append(
            Periodic("reconcile call attempts", "jobs.maintenance.reconcile_calls", 5)
        )
    if settings.JOB_RETENTION_DAYS:
        tasks.append(
            Periodic("purge old finished jobs", "jobs.maintenance.purge_finished", 60)
        )
    return tasks


def ensure_schedules(**kwargs: Any) -> None:
    """Create or update our schedules; remove ours that are no longer wanted
    (e.g. retention switched off). Schedules made by hand are left alone."""
    from django.db import connections
    from django_q.models import Schedule

    using = kwargs.get("using", "default")
    if Schedule._meta.db_table not in connections[using].introspection.table_names():
        return  # django_q is not migrated yet (a partial `migrate <app>`)

    wanted = {PREFIX + t.name: t for t in periodic_tasks()}
    for name, task in wanted.items():
        Schedule.objects.using(using).update_or_create(
            name=name,
            defaults={
                "func": task.func,
                "schedule_type": Schedule.MINUTES,
                "minutes": task.minutes,
                "repeats": -1,
                "cluster": task.cluster,
            },
        )
    stale = (
        Schedule.objects.using(using)
        .filter(name__startswith=PREFIX)
        .exclude(name__in=list(wanted))
    )
    removed, _ = stale.delete()
    logger.debug(
        "maintenance schedules ensured",
        extra={"action": "schedules.ensure", "count": len(wanted), "removed": removed},
    )
