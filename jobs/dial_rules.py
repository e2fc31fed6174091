"""The account's dialing rules, checked again at the moment of dialling.

Imports refuse numbers the account may not call (accounts/dialing.py), but
staff can narrow an account's rules while its jobs wait in the queue, and a
change must hold for those jobs too. So the worker checks every job once more
right after ``mark_dialed`` has committed and before the dialer is asked to
call. Reading the rules after that commit means that any change committed
before the dial mark is seen: the rule holds for every dial after it.

The check costs one statement per claim round (the rules of the round's
accounts); a refused job is ended by ``jobs.services.job_refuse_dial``.
"""

from __future__ import annotations

import logging

from django.conf import settings

from accounts.dialing import refusal
from accounts.models import Account
from jobs.imports import parse_phone
from jobs.models import Job
from jobs.services import job_refuse_dial

logger = logging.getLogger(__name__)


def refusal_reason(job: Job, rules: tuple[list[str], list[str]]) -> str | None:
    """Why the job's number may not be called under ``rules`` (allowed
    number types, allowed countries); None if it may."""
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


def keep_allowed(*, jobs: list[Job], worker_id: str, token: str = "") -> list[Job]:
    """The jobs the account may still call; the others are cancelled with
    the reason (audited, attempt and reservation given back)."""
    if not jobs:
        return []
    rules = {
        pk: (types, countries)
        for pk, types, countries in Account.objects.filter(
            pk__in={job.account_id for job in jobs}
        ).values_list("pk", "allowed_number_types", "allowed_countries")
    }
    allowed = []
    for job in jobs:
        reason = refusal_reason(job, rules.get(job.account_id, ([], [])))
        if reason is None:
            allowed.append(job)
            continue
        refused = job_refuse_dial(
            job=job,
            worker_id=worker_id,
            token=token,
            reason=f"Not dialled: {reason}"[:255],
        )
        logger.warning(
            "job not dialled: the account's dialing rules refuse the number",
            extra={
                "action": "job.dial_refused",
                "job_id": job.pk,
                "batch_id": job.batch_id,
                "worker_id": worker_id,
                "reason": reason,
                "ended": refused,
            },
        )
    return allowed
