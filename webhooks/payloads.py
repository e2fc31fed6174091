"""The `data` part of webhook payloads. Field names follow the API."""

from __future__ import annotations

from typing import Any


def batch_data(batch: Any, event: Any) -> dict[str, Any]:
    return {
        "batch": {
            "batch_id": batch.batch_id,
            "name": batch.name,
            "state": batch.state,
            "is_active": batch.is_active,
            "priority": batch.priority,
            "pause_source": batch.pause_source,
            "pause_reason": batch.pause_reason,
            "paused_at": batch.paused_at,
            "cancelled_at": batch.cancelled_at,
            "completed_at": batch.completed_at,
            "deleted_at": batch.deleted_at,
            "updated_at": batch.updated_at,
        },
        "event": {
            "action": event.action,
            "source": event.source,
            "actor": event.actor_label,
            "reason": event.reason,
            "changes": event.changes,
            "created_at": event.created_at,
        },
    }


def job_data(job: Any, outcome: Any) -> dict[str, Any]:
    batch_public_id = None
    if job.batch_id:
        from batches.models import Batch

        batch_public_id = (
            Batch.all_objects.filter(pk=job.batch_id)
            .values_list("batch_id", flat=True)
            .first()
        )
    return {
        "job": {
            "id": job.pk,
            "batch_id": batch_public_id,
            "phone_number": job.phone_number,
            "status": job.status,
            "attempts": job.attempts,
            "result": job.result,
            "finished_at": job.finished_at,
        },
        "outcome": outcome,
    }
