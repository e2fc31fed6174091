"""Signal receivers of the jobs app, connected in JobsConfig.ready()."""

from __future__ import annotations

from typing import Any

from jobs.services import (
    accounts_with_suspended_jobs,
    jobs_restore_after_credits,
    jobs_suspend_for_credits,
)

# --- Credits (accounts.signals): jobs held and released after the account's lock


def suspend_jobs_on_credits_ran_out(
    sender: Any, account_id: int, while_balance_below: int, **kwargs: Any
) -> int:
    return jobs_suspend_for_credits(
        account_id=account_id, while_balance_below=while_balance_below
    )


def restore_jobs_on_credits_available(
    sender: Any, account_id: int, **kwargs: Any
) -> int:
    return jobs_restore_after_credits(account_id=account_id)


def accounts_with_held_jobs(sender: Any, **kwargs: Any) -> set[int]:
    return accounts_with_suspended_jobs()
