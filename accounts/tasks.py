"""django-q2 entry points of the accounts app. Thin: they call the services."""

from __future__ import annotations

from accounts.credits import accounts_reconcile_credits, credits_settle_orphans
from accounts.idempotency import idempotency_keys_purge


def reconcile_credits() -> dict[str, int]:
    return {
        "orphaned_reservations_settled": credits_settle_orphans(),
        "accounts_restored": accounts_reconcile_credits(),
    }


def purge_idempotency_keys() -> int:
    return idempotency_keys_purge()
