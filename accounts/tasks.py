"""django-q2 entry points of the accounts app. Thin: they call the services."""

from __future__ import annotations

from accounts.services import accounts_reconcile_credits, credits_settle_orphans


def reconcile_credits() -> dict[str, int]:
    return {
        "orphaned_reservations_settled": credits_settle_orphans(),
        "accounts_restored": accounts_reconcile_credits(),
    }
