"""django-q2 entry points of the batches app. Thin: they call the services."""

from __future__ import annotations

from batches.job_counts import fold_job_counts, job_counts_repair
from batches.services import batches_reconcile_completions


def reconcile_completions() -> int:
    return batches_reconcile_completions()


def verify_job_counts() -> int:
    """Fold the appended count changes, then compare the kept job counts with
    COUNT(*) and repair any drift."""
    fold_job_counts()
    return len(job_counts_repair())
