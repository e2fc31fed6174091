"""The account's allowed number types and countries (accounts/dialing.py).

Imports refuse numbers the account may not call, but staff can narrow an
account's rules while its jobs wait in the queue; the gate checks them again.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.conf import settings

from accounts.dialing import refusal
from jobs.models import Job
from jobs.rules import GateContext, Reason, Refuse, Verdict
from jobs.rules.sqlvalues import json_value

CODE = "number_not_allowed"

COLUMNS = {
    "allowed_number_types": "a.allowed_number_types",
    "allowed_countries": "a.allowed_countries",
}


def refusal_reason(job: Job, rules: tuple[list[str], list[str]]) -> str | None:
    """Why the job's number may not be called under ``rules`` (allowed
    number types, allowed countries); None if it may."""
    from jobs.imports import parse_phone

    phone = parse_phone(job.phone_number, settings.DEFAULT_PHONE_REGION)
    if phone is None:
        return f"{job.phone_number} is not a valid phone number."
    reason = refusal(
        region=phone.region,
        number_type=phone.number_type,
        allowed_number_types=rules[0],
        allowed_countries=rules[1],
    )
    return f"{phone.e164}: {reason}" if reason else None


def _rules(row: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    return (
        json_value(row.get("allowed_number_types")) or [],
        json_value(row.get("allowed_countries")) or [],
    )


def check(jobs: list[Job], context: GateContext) -> dict[int, Verdict]:
    found: dict[int, Verdict] = {}
    for job in jobs:
        reason = refusal_reason(job, _rules(context.row(job)))
        if reason is not None:
            found[job.pk] = Refuse(CODE, reason)
    return found


def explain(job: Job, now: datetime) -> list[Reason]:
    account = job.account
    reason = refusal_reason(
        job, (account.allowed_number_types, account.allowed_countries)
    )
    return [Reason(CODE, reason)] if reason else []
