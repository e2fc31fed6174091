"""django-q2 entry points for job maintenance (see callcenter/schedules.py)."""

from __future__ import annotations

from django.conf import settings

from jobs.services import jobs_purge_finished

RECOVERER = "q2-maintenance"


def recover_leases() -> int:
    from jobs.dialers import get_dialer
    from jobs.lifecycle import recover_expired_leases

    dialer = get_dialer(settings.CALL_DIALER)
    try:
        return recover_expired_leases(recoverer=RECOVERER, dialer=dialer)
    finally:
        dialer.close()


def purge_finished() -> int:
    if not settings.JOB_RETENTION_DAYS:
        return 0
    return jobs_purge_finished(older_than_days=settings.JOB_RETENTION_DAYS)


def reconcile_calls() -> dict[str, int]:
    """Attempts whose final provider callback never came (jobs/reconcile.py)."""
    from jobs.reconcile import reconcile_attempts, reconcile_http_attempts

    counts: dict[str, int] = {}
    if settings.TWILIO_ACCOUNT_SID:
        counts.update(reconcile_attempts())
    if settings.HTTP_DIALER_URL:
        counts["http_resolved"] = reconcile_http_attempts()["resolved"]
    return counts
