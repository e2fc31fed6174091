"""django-q2 entry points of the batches app. Thin: they call the services."""

from __future__ import annotations

from batches.services import batches_reconcile_completions


def reconcile_completions() -> int:
    return batches_reconcile_completions()
