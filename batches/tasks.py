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


def run_operation(operation_pk: int) -> str | None:
    """One run of a background sweep (batches.operations)."""
    from batches.operations import operation_run

    return operation_run(operation_pk)


def resume_operations() -> int:
    """Queue the background sweeps that a kill or a restart interrupted."""
    from batches.operations import operations_resume

    return operations_resume()
