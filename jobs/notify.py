"""Wake idle workers through PostgreSQL LISTEN/NOTIFY.

Any service that makes jobs claimable (insert, resume, requeue, promotion)
calls ``notify_jobs_available()`` inside its transaction. PostgreSQL delivers
the notification only when that transaction commits, and folds duplicates, so
calling it often is cheap and never wakes a worker too early.
"""

from __future__ import annotations

from django.db import connection

CHANNEL = "callcenter_jobs"


def notify_jobs_available(payload: str = "") -> None:
    if connection.vendor != "postgresql":
        return  # SQLite workers poll; there is no one to notify.
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, payload])
