"""The calling window as a rule of the dial gate, and where jobs wait.

The pure computation is ``jobs.rules.windows``; this module reads what it
needs (the batch's window, the account's holidays, the job's number and
timezone) and answers three questions:

* at import and at retry scheduling: when may this job next be dialled?
  A job outside its window is parked as ``scheduled`` at its next opening,
  out of the claim index, so claims never walk it;
* at the dial gate: is the window open now? If it has closed since the job
  was claimed, the job is deferred to its next opening (no attempt spent,
  audited); if its zone is unknown, it is refused;
* for explain: ``outside_window`` or ``holiday``, until when, in which zone,
  and the recipient's local time now.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from accounts.models import Account
from jobs.models import Job
from jobs.rules.windows import (
    Recipient,
    Verdict,
    Window,
    configured_default_window,
    holiday_dates,
    next_opening,
    recipient_for,
    verdict,
)


def window_of(calling_window: Mapping[str, Any] | None) -> Window:
    """A stored window (validated when it was saved); a one-off job's is
    CALLING_WINDOW_DEFAULT."""
    return Window.parse(calling_window or configured_default_window())


def rules_for(job: Job) -> tuple[Window, frozenset, Recipient]:
    """One job's window, holidays and recipient, read from the database."""
    # Through the job's relations: one query, and no import of the batches
    # app (which sits above jobs).
    stored, holidays = (
        Job.objects.filter(pk=job.pk)
        .values_list("batch__calling_window", "account__holidays")
        .get()
    )
    return (
        window_of(stored),
        holiday_dates(holidays or []),
        recipient_for(job.phone_number, job.timezone),
    )


def job_verdict(job: Job, now: datetime) -> Verdict:
    window, holidays, recipient = rules_for(job)
    return verdict(window, recipient, holidays, now)


def opening_at_or_after(job: Job, when: datetime) -> datetime | None:
    """The first instant at or after ``when`` at which ``job`` may be dialled."""
    window, holidays, recipient = rules_for(job)
    return next_opening(window, recipient, holidays, when)


class ImportWindows:
    """Next openings for the rows of one import into one batch, computed
    once per distinct recipient (zones and state) and start time."""

    def __init__(self, batch: Any, now: datetime) -> None:
        self.window = window_of(batch.calling_window)
        holidays = (
            Account.objects.filter(pk=batch.account_id)
            .values_list("holidays", flat=True)
            .get()
        )
        self.holidays = holiday_dates(holidays or [])
        self.now = now
        self.cache: dict[tuple[Recipient, datetime], datetime | None] = {}

    def opening(self, recipient: Recipient, start: datetime | None) -> datetime | None:
        when = max(start, self.now) if start is not None else self.now
        key = (recipient, when)
        if key not in self.cache:
            self.cache[key] = next_opening(self.window, recipient, self.holidays, when)
        return self.cache[key]


def holidays_by_account(account_ids: Iterable[int]) -> dict[int, frozenset]:
    return {
        pk: holiday_dates(values or [])
        for pk, values in Account.objects.filter(pk__in=set(account_ids)).values_list(
            "pk", "holidays"
        )
    }


# --- the dial gate's rule (jobs/rules/__init__.py) ----------------------------

CODE_OUTSIDE = "outside_window"
CODE_HOLIDAY = "holiday"
CODE_UNKNOWN_ZONE = "unknown_timezone"

COLUMNS = {
    "calling_window": "b.calling_window",
    "holidays": "a.holidays",
}


def _gate_verdict(job: Job, row: Mapping[str, Any], now: datetime) -> Verdict:
    from jobs.rules.sqlvalues import json_value

    window = window_of(json_value(row.get("calling_window")))
    holidays = holiday_dates(json_value(row.get("holidays")) or [])
    return verdict(window, recipient_for(job.phone_number, job.timezone), holidays, now)


def check(jobs: list[Job], context: Any) -> dict[int, Any]:
    """Defer a job whose window is closed at the database's ``now`` to its
    next opening (no attempt spent); refuse one whose zone is unknown or
    whose window never opens."""
    from jobs.rules import Defer, Refuse

    found: dict[int, Any] = {}
    for job in jobs:
        result = _gate_verdict(job, context.row(job), context.now)
        if result.open:
            continue
        if result.code == CODE_UNKNOWN_ZONE:
            found[job.pk] = Refuse(CODE_UNKNOWN_ZONE, result.detail())
        elif result.until is None:
            found[job.pk] = Refuse(
                CODE_OUTSIDE, "The calling window never opens for this number."
            )
        else:
            found[job.pk] = Defer(result.code, result.until, result.detail())
    return found


def explain(job: Job, now: datetime) -> list[Any]:
    """``outside_window`` or ``holiday``: until when, in which zone, and the
    recipient's local time now."""
    from jobs.rules import Reason

    result = job_verdict(job, now)
    if result.open:
        return []
    code = CODE_HOLIDAY if result.code == CODE_HOLIDAY else CODE_OUTSIDE
    return [Reason(code, result.detail(), result.until)]
