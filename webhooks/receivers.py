"""Turn committed domain changes into webhook events.

Both signals are sent after the change has committed, so no endpoint ever
hears of a transition that rolled back.
"""

from __future__ import annotations

import logging
from typing import Any

from webhooks import events
from webhooks.payloads import batch_data, job_data
from webhooks.services import webhook_emit

logger = logging.getLogger(__name__)

_BATCH_ACTIONS = {
    "paused": events.BATCH_PAUSED,
    "resumed": events.BATCH_RESUMED,
    "cancelled": events.BATCH_CANCELLED,
    "deleted": events.BATCH_DELETED,
    "completed": events.BATCH_COMPLETED,
}


def batch_event_type(action: str, event: Any) -> str | None:
    from accounts.services import NO_CREDITS_REASON

    event_type = _BATCH_ACTIONS.get(action)
    if (
        event_type == events.BATCH_PAUSED
        and event.source == "system"
        and event.reason == NO_CREDITS_REASON
    ):
        return events.BATCH_AUTO_PAUSED
    return event_type


def on_batch_transitioned(
    sender: Any, batch: Any, event: Any, action: str, **kwargs: Any
) -> None:
    event_type = batch_event_type(action, event)
    if event_type is None:
        return
    try:
        webhook_emit(
            account_id=batch.account_id,
            event_type=event_type,
            data=batch_data(batch, event),
        )
    except Exception:
        # The transition has committed; losing its webhook must not turn the
        # caller's success into an error.
        logger.exception(
            "webhook emission failed",
            extra={"action": "webhook.emit", "event": event_type},
        )


def on_job_finished(sender: Any, job: Any, outcome: Any = None, **kwargs: Any) -> None:
    from jobs.models import COMPLETED_STATUSES, JobStatus

    if job.status in COMPLETED_STATUSES:
        event_type = events.JOB_COMPLETED
    elif job.status == JobStatus.FAILED:
        event_type = events.JOB_FAILED
    else:
        return
    try:
        webhook_emit(
            account_id=job.account_id,
            event_type=event_type,
            data=lambda: job_data(job, outcome),
        )
    except Exception:
        logger.exception(
            "webhook emission failed",
            extra={"action": "webhook.emit", "event": event_type, "job_id": job.pk},
        )
