"""The peers: django-q2's ORM broker and Procrastinate, set up for a claim race.

Both get the same number of no-op tasks as our claimers get jobs. django-q2
uses our database (its OrmQ table, as the project runs it); Procrastinate gets
a database of its own, with its schema applied through its SchemaManager.
"""

from __future__ import annotations

import asyncio
from typing import Any

NOOP_TASK = "bench.noop"


def djangoq_fill(count: int, list_key: str = "bench") -> None:
    """Enqueue `count` tasks into OrmQ.

    One task goes through the broker's own enqueue() with a package signed as
    async_task() signs it; the rest are copies of that row made in one INSERT,
    because `count` separate ORM inserts would take longer than the race.
    """
    from django.db import connection
    from django_q.brokers import get_broker
    from django_q.models import OrmQ
    from django_q.signing import SignedPackage

    broker = get_broker(list_key)
    broker.purge_queue()
    package = SignedPackage.dumps(
        {"id": "bench", "name": "bench", "func": "math.copysign", "args": (1, 1)}
    )
    first = broker.enqueue(package)
    if count > 1:
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                INSERT INTO {OrmQ._meta.db_table} (key, payload, lock)
                SELECT key, payload, lock
                FROM {OrmQ._meta.db_table}, generate_series(2, %s)
                WHERE id = %s
                """,
                [count, first],
            )
            cursor.execute(f"VACUUM ANALYZE {OrmQ._meta.db_table}")


def _app(url: str, pool_size: int = 1, synchronous_commit: str = "") -> Any:
    import procrastinate

    # Arguments other than its own go to psycopg's pool, and `kwargs` from
    # there to every connection it opens.
    extra: dict[str, Any] = {}
    if synchronous_commit:
        extra["kwargs"] = {"options": f"-c synchronous_commit={synchronous_commit}"}
    connector = procrastinate.PsycopgConnector(
        conninfo=url, min_size=pool_size, max_size=pool_size, **extra
    )
    app = procrastinate.App(connector=connector)

    @app.task(name=NOOP_TASK)
    def noop() -> None:
        return None

    return app


async def procrastinate_open(
    url: str, *, synchronous_commit: str = ""
) -> tuple[Any, int]:
    """Open an app with a one-connection pool and register a worker row."""
    app = _app(url, synchronous_commit=synchronous_commit)
    await app.open_async()
    worker_id = await app.job_manager.register_worker()
    return app, worker_id


async def _procrastinate_fill(url: str, count: int, apply_schema: bool) -> None:
    app = _app(url)
    async with app.open_async():
        if apply_schema:
            await app.schema_manager.apply_schema_async()
        await app.connector.execute_query_async(
            "TRUNCATE procrastinate_jobs, procrastinate_events, procrastinate_workers"
            " CASCADE"
        )
        task = app.tasks[NOOP_TASK]
        chunk = 5000
        for i in range(0, count, chunk):
            await task.batch_defer_async(*({} for _ in range(min(chunk, count - i))))
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE procrastinate_jobs")


def procrastinate_fill(url: str, count: int, *, apply_schema: bool = False) -> None:
    asyncio.run(_procrastinate_fill(url, count, apply_schema))
