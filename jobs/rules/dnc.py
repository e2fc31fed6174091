"""Do-not-call: a number on the account's list or the system-wide list is
never dialled; its job is cancelled with stop code ``dnc`` (jobs/dnc.py).

The two lookups are index probes on the lists' unique constraints, read in
the mark statement, so an entry committed before the gate's transaction
stops the dial.
"""

from __future__ import annotations

from datetime import datetime

from jobs.models import Job
from jobs.rules import GateContext, Reason, Refuse, Verdict
from jobs.rules.sqlvalues import timestamp

CODE = "dnc"

COLUMNS = {
    "dnc_account_since": (
        "(SELECT d.created_at FROM jobs_dncentry d"
        " WHERE d.account_id = j.account_id AND d.phone_number = j.phone_number)"
    ),
    "dnc_system_since": (
        "(SELECT d.created_at FROM jobs_dncentry d"
        " WHERE d.account_id IS NULL AND d.phone_number = j.phone_number)"
    ),
}


def detail(
    job: Job, *, account_since: datetime | None, system_since: datetime | None
) -> str:
    lists = []
    if account_since is not None:
        lists.append(
            f"the account's do-not-call list since {account_since.isoformat()}"
        )
    if system_since is not None:
        lists.append(
            f"the system-wide do-not-call list since {system_since.isoformat()}"
        )
    return f"{job.phone_number} is on " + " and ".join(lists) + "."


def check(jobs: list[Job], context: GateContext) -> dict[int, Verdict]:
    found: dict[int, Verdict] = {}
    for job in jobs:
        row = context.row(job)
        account_since = timestamp(row.get("dnc_account_since"))
        system_since = timestamp(row.get("dnc_system_since"))
        if account_since is None and system_since is None:
            continue
        found[job.pk] = Refuse(
            CODE,
            detail(job, account_since=account_since, system_since=system_since),
        )
    return found


def explain(job: Job, now: datetime) -> list[Reason]:
    from jobs.dnc import dnc_lookup

    entries = dnc_lookup(job)
    if not entries:
        return []
    account_since = next((e.created_at for e in entries if e.account_id), None)
    system_since = next((e.created_at for e in entries if not e.account_id), None)
    return [
        Reason(
            CODE,
            detail(job, account_since=account_since, system_since=system_since),
        )
    ]
