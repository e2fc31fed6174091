"""Fast data generation: INSERT … SELECT generate_series, never the ORM.

Every row gets every NOT NULL column explicitly, since Django's model
defaults are not database defaults.

Batches get an all-day calling window: the bench's numbers are in
California, whose hours are the federal ones, so the throughput figures do
not depend on the hour the bench runs at (the calling-window figures set
their own windows).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from django.db import connection

JOB_COLUMNS = (
    "account_id, batch_id, phone_number, variables, status, priority, attempts,"
    " max_attempts, claimed_by, call_id, attempt_log, last_error, cancel_reason,"
    " created_at, updated_at, finished_at"
)


def _execute(query: str, params: list[object] | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(query, params or [])


def create_account(slug: str, credits: int = 10**12) -> int:
    from accounts.models import Account

    account, _ = Account.objects.get_or_create(
        slug=slug, defaults={"name": slug, "credits": credits}
    )
    return account.pk


def all_day_calling_window() -> dict[str, object]:
    from jobs.rules.windows import all_day_calling_window as all_day

    return all_day()


def create_batches(
    account_id: int,
    count: int,
    *,
    active: bool,
    prefix: str,
    priority: int = 0,
    window: dict[str, object] | None = None,
) -> list[int]:
    """Batches with an all-day calling window unless ``window`` is given."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO batches_batch (batch_id, account_id, name, description,
                priority, is_active, pause_source, pause_reason, paused_at,
                calling_window, created_at, updated_at)
            SELECT %s || '-' || g, %s, %s || ' ' || g, '', %s, %s, '', '',
                CASE WHEN %s THEN NULL ELSE now() END, %s::jsonb, now(), now()
            FROM generate_series(1, %s) AS g
            RETURNING id
            """,
            [
                prefix,
                account_id,
                prefix,
                priority,
                active,
                active,
                json.dumps(window or all_day_calling_window()),
                count,
            ],
        )
        return sorted(row[0] for row in cursor.fetchall())


def insert_jobs(
    account_id: int,
    batch_ids: list[int],
    per_batch: int,
    *,
    status: str = "pending",
    start: int = 0,
) -> int:
    """Insert `per_batch` jobs into each batch; numbers start at `start`.

    Valid US numbers (+1 415 200-0000 on), because the worker checks each
    number against the account's dialing rules before it dials.
    """
    if not batch_ids or per_batch <= 0:
        return 0
    finished = "now()" if status in ("completed", "failed", "cancelled") else "NULL"
    _execute(
        f"""
        INSERT INTO jobs_job ({JOB_COLUMNS})
        SELECT %s, b, '+1' || (4152000000 + %s + g)::text, '{{}}'::jsonb, %s,
            0, 0, 3, '', '', '[]'::jsonb, '', '', now(), now(), {finished}
        FROM unnest(%s::bigint[]) AS b, generate_series(1, %s) AS g
        """,
        [account_id, start, status, batch_ids, per_batch],
    )
    return len(batch_ids) * per_batch


def vacuum_analyze(*tables: str) -> None:
    with connection.cursor() as cursor:
        for table in tables or ("jobs_job", "batches_batch"):
            cursor.execute(f"VACUUM ANALYZE {table}")


def truncate_jobs() -> None:
    _execute(
        "TRUNCATE jobs_job, jobs_jobevent, batches_batch, batches_batchevent CASCADE"
    )


@dataclass
class Dataset:
    account_id: int
    active_batches: list[int]
    paused_batches: list[int] = field(default_factory=list)
    total_jobs: int = 0
    active_pending: int = 0


def history_shaped(total: int, *, batches: int = 20, slug: str = "bench") -> Dataset:
    """`total` jobs: 40% finished, 60% pending, half of the pending ones in
    paused batches. Batches are half active, half paused; finished jobs are
    spread over all of them, as history is.
    """
    from accounts.models import Account

    account_id = Account.objects.filter(slug=slug).values_list(
        "pk", flat=True
    ).first() or create_account(slug)
    half = max(1, batches // 2)
    active = create_batches(account_id, half, active=True, prefix=f"{slug}-active")
    paused = create_batches(account_id, half, active=False, prefix=f"{slug}-paused")
    finished = int(total * 0.4)
    pending = total - finished
    per_active = pending // 2 // half
    per_paused = pending // 2 // half
    per_finished = finished // (2 * half)
    insert_jobs(account_id, active, per_active)
    insert_jobs(account_id, paused, per_paused)
    insert_jobs(
        account_id, active + paused, per_finished, status="completed", start=10**8
    )
    vacuum_analyze()
    return Dataset(
        account_id=account_id,
        active_batches=active,
        paused_batches=paused,
        total_jobs=half * (per_active + per_paused) + 2 * half * per_finished,
        active_pending=half * per_active,
    )
