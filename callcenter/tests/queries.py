"""Counting the statements a block of code sends (CaptureQueriesContext)."""

from __future__ import annotations

from django.test.utils import CaptureQueriesContext

_NOT_THE_WORK = ("SAVEPOINT", "RELEASE SAVEPOINT", "PREPARE")


def statements_sent(queries: CaptureQueriesContext) -> list[str]:
    """The statements sent, without those that are not the code's own work:
    the savepoints a test's transaction puts around each statement, and what
    a connection sends once for its prepared statements (PREPARE, and the
    read of pg_prepared_statements). BEGIN and COMMIT are kept."""
    return [
        q["sql"]
        for q in queries.captured_queries
        if not q["sql"].startswith(_NOT_THE_WORK)
        and "FROM pg_prepared_statements" not in q["sql"]
    ]
