"""The webhook event types. Job events are opt-in: an endpoint receives them
only when it lists them, because a campaign produces one per call."""

from __future__ import annotations

BATCH_PAUSED = "batch.paused"
BATCH_RESUMED = "batch.resumed"
BATCH_CANCELLED = "batch.cancelled"
BATCH_DELETED = "batch.deleted"
BATCH_COMPLETED = "batch.completed"
BATCH_AUTO_PAUSED = "batch.auto_paused"
JOB_COMPLETED = "job.completed"
JOB_FAILED = "job.failed"

BATCH_EVENTS = (
    BATCH_PAUSED,
    BATCH_RESUMED,
    BATCH_CANCELLED,
    BATCH_DELETED,
    BATCH_COMPLETED,
    BATCH_AUTO_PAUSED,
)
JOB_EVENTS = (JOB_COMPLETED, JOB_FAILED)
ALL_EVENTS = BATCH_EVENTS + JOB_EVENTS
EVENT_CHOICES = [(e, e) for e in ALL_EVENTS]


def default_event_types() -> list[str]:
    return list(BATCH_EVENTS)
