"""Wake workers through PostgreSQL LISTEN/NOTIFY.

Any service that makes jobs claimable (insert, resume, requeue, promotion)
calls ``notify_jobs_available()`` inside its transaction. PostgreSQL delivers
the notification only when that transaction commits, and folds duplicates, so
calling it often is cheap and never wakes a worker too early.

A batch cancel or delete calls ``notify_batch_stopped(batch_pk)`` in the
transaction that closes the batch: the workers holding its calls wake at the
commit and hang up those not answered yet (jobs/worker.py), instead of
noticing at their next lease renewal.
"""

from __future__ import annotations

from django.db import connection

CHANNEL = "callcenter_jobs"
# Payload: the primary key of a batch just cancelled or deleted.
BATCH_STOPPED_CHANNEL = "callcenter_batch_stopped"


def _notify(channel: str, payload: str) -> None:
    if connection.vendor != "postgresql":
        return  # SQLite workers poll; there is no one to notify.
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, %s)", [channel, payload])


def notify_jobs_available(payload: str = "") -> None:
    _notify(CHANNEL, payload)


def notify_batch_stopped(batch_pk: int) -> None:
    _notify(BATCH_STOPPED_CHANNEL, str(batch_pk))
