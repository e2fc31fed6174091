"""The fold of the per-batch job counts, the part workers run.

The triggers on jobs_job append each statement's count changes; the fold
moves them into one row per batch and bucket so that readers sum few rows.
How the counts work, and why, is in ``batches/job_counts.py``; this module
lives in ``jobs`` only so that the worker can fold without reaching up into
``batches``.
"""

from __future__ import annotations

from django.db import connection, transaction


def fold_job_counts() -> int:
    """Fold the appended count changes into one row per batch and bucket.

    Returns how many changes were folded (0 when another fold is running, or
    on SQLite, where no counts are kept). Safe to call at any time from
    anywhere: readers sum folded and unfolded rows in one statement, so a fold
    changes no count they see. Workers call it every
    ``JOB_COUNTS_FOLD_SECONDS``.
    """
    if connection.vendor != "postgresql":
        return 0
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT batch_job_counts_fold()")
        row = cursor.fetchone()
    return int(row[0]) if row else 0
