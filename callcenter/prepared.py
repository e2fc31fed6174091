"""Server-side prepared statements for the worker's hot statements.

The worker runs the same few statements over and over: the claim, the
reservation, the outcome record, the settlement. Each is a CTE that takes
PostgreSQL longer to plan than to run (planning 0.2-0.4 ms, execution under
0.1 ms on the bench machine). Prepared, each is planned once per connection.

Django turns psycopg's automatic preparation off (for connection poolers), so
these are prepared by name: ``PREPARE`` once per connection, then ``EXECUTE``.
A statement is written with ``%(name)s`` placeholders, as for
``cursor.execute``; each becomes ``$n`` in the prepared text, and its type is
inferred by PostgreSQL from its context (cast array parameters, e.g.
``%(ids)s::bigint[]``).

``DATABASE_PREPARED_STATEMENTS=false`` runs them unprepared, behind a pooler
that cannot keep prepared statements (PgBouncer in transaction mode before
1.21).
"""

from __future__ import annotations

import functools
import re
from typing import Any

from django.conf import settings
from django.db import ProgrammingError, connection

_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def fetch_prepared(
    name: str, sql: str, params: dict[str, Any]
) -> list[tuple[Any, ...]]:
    """Run ``sql`` with ``params`` and return its rows, prepared as ``name``.

    ``sql`` must return rows (a SELECT, or RETURNING): they are fetched
    without asking for the result's description first, which psycopg builds
    column by column (about 60 us for the claim's 23 columns).

    Runs in the current transaction, or as its own in autocommit. Unprepared
    when DATABASE_PREPARED_STATEMENTS is off or the database is not
    PostgreSQL.
    """
    if not settings.DATABASE_PREPARED_STATEMENTS or connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()
    connection.ensure_connection()
    raw_conn = connection.connection
    prepared: set[str] | None = getattr(raw_conn, "_callcenter_prepared", None)
    if prepared is None:
        prepared = raw_conn._callcenter_prepared = _server_prepared()
    try:
        return _execute(name, sql, params, prepared)
    except ProgrammingError:
        # The session's prepared statements are not what we think (DISCARD
        # ALL by a pooler): ask the server, and try once more, if no
        # transaction was spoiled by the error.
        if not connection.get_autocommit():
            raise
        known = _server_prepared()
        if known == prepared:
            raise
        prepared.clear()
        prepared.update(known)
        return _execute(name, sql, params, prepared)


def _server_prepared() -> set[str]:
    """The statements this session has prepared, as the server knows them."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements")
        return {name for (name,) in cursor.fetchall()}


@functools.cache
def _compile(name: str, sql: str) -> tuple[str, str, tuple[str, ...]]:
    """The PREPARE text, the EXECUTE text and the parameters' order, once per
    process: the claim runs thousands of times a second."""
    order: list[str] = []

    def number(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in order:
            order.append(key)
        return f"${order.index(key) + 1}"

    body = _PLACEHOLDER.sub(number, sql)
    marks = ", ".join(["%s"] * len(order))
    execute = f"EXECUTE {name} ({marks})" if order else f"EXECUTE {name}"
    return f"PREPARE {name} AS {body}", execute, tuple(order)


def _execute(
    name: str, sql: str, params: dict[str, Any], prepared: set[str]
) -> list[tuple[Any, ...]]:
    prepare, execute, order = _compile(name, sql)
    with connection.cursor() as cursor:
        if name not in prepared:
            cursor.execute(prepare)
            prepared.add(name)
        cursor.execute(execute, [params[k] for k in order] if order else None)
        return cursor.fetchall()
