"""Turn committed domain changes into webhook events.

Both signals are sent after the change has committed, so no endpoint ever
hears of a transition that rolled back.
"""

from __future__ import annotations

import logging
from typing import Any

from webhooks import events
from webhooks.payloads import batch_data, job_data
from webhooks.services import webhook_emit, webhook_emit_many

logger = logging.getLogger(__name__)

_BATCH_ACTIONS = {
    "paused": events.BATCH_PAUSED,
    "resumed": events.BATCH_RESUMED,
    "cancelled": events.BATCH_CANCELLED,
    "deleted": events.BATCH_DELETED,
    "completed": events.BATCH_COMPLETED,
}


def batch_event_type(action: str, event: Any) -> str | None:
    from accounts.credits import NO_CREDITS_REASON

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


def on_jobs_finished(
    sender: Any, finished: list[tuple[Any, Any]], **kwargs: Any
) -> None:
    """job.completed / job.failed for each job, one endpoint lookup per account."""
    from jobs.models import COMPLETED_STATUSES, JobStatus

    by_account: dict[int, list[tuple[str, Any]]] = {}
    for job, outcome in finished:
        if job.status in COMPLETED_STATUSES:
            event_type = events.JOB_COMPLETED
        elif job.status == JobStatus.FAILED:
            event_type = events.JOB_FAILED
        else:
            continue
        by_account.setdefault(job.account_id, []).append(
            (event_type, _job_payload(job, outcome))
        )
    for account_id, emitted in by_account.items():
        try:
            webhook_emit_many(account_id=account_id, emitted=emitted)
        except Exception:
            logger.exception(
                "webhook emission failed",
                extra={"action": "webhook.emit", "account_id": account_id},
            )


def _job_payload(job: Any, outcome: Any) -> Any:
    return lambda: job_data(job, outcome)
