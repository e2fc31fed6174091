"""Do-not-call lists: the account's own and the system-wide one (staff's).

Numbers are stored in E.164, parsed as imports parse them (``parse_phone``),
so "+1 (415) 555-0100" and "+14155550100" are one entry. Adding is all or
nothing: one invalid number refuses the whole request, naming its row.

The dial gate reads both lists for every dial (jobs/rules/dnc.py): a job
whose number is on either is cancelled with stop code ``dnc`` when its turn
comes, never dialled. An opt-out (the dialer's result says ``opt_out``, or
``POST /jobs/{id}/opt-out``) adds the number to the account's list and
cancels the number's other open jobs in the account at once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Account, AccountEvent
from callcenter.actor import Actor
from jobs import transitions
from jobs.models import (
    NON_TERMINAL_STATUSES,
    DncEntry,
    DncSource,
    Job,
    JobEvent,
    JobStatus,
)
from jobs.signals import send_jobs_finished_on_commit

logger = logging.getLogger(__name__)

DNC_CODE = "dnc"
OPT_OUT_CODE = "opt_out"


class DncInputError(ValueError):
    """Bad numbers in a DNC request: ``errors`` is a list of
    {"row", "phone_number", "errors"} (as an import's bad rows), one per bad
    row."""

    def __init__(self, errors: list[dict[str, object]]) -> None:
        super().__init__(f"{len(errors)} invalid number(s)")
        self.errors = errors


def normalize(raw: object) -> str | None:
    """The number in E.164, or None if it is not a valid phone number."""
    from jobs.imports import parse_phone

    if not isinstance(raw, str):
        return None
    phone = parse_phone(raw, settings.DEFAULT_PHONE_REGION)
    return phone.e164 if phone is not None else None


def normalize_all(values: Iterable[object], *, first_row: int = 1) -> list[str]:
    """Every value in E.164 (duplicates dropped, order kept), or
    ``DncInputError`` naming each bad row; nothing is written either way."""
    numbers: dict[str, None] = {}
    errors: list[dict[str, object]] = []
    for row, value in enumerate(values, start=first_row):
        e164 = normalize(value)
        if e164 is None:
            shown = value if isinstance(value, str) else None
            errors.append(
                {
                    "row": row,
                    "phone_number": shown,
                    "errors": [f"phone_number: {value!r} is not a valid phone number."],
                }
            )
        else:
            numbers[e164] = None
    if errors:
        raise DncInputError(errors)
    return list(numbers)


@dataclass
class Added:
    added: int
    already: int


def dnc_add(
    *,
    account: Account | None,
    numbers: list[str],
    actor: Actor,
    source: str = DncSource.API,
    job_pk: int | None = None,
    note: str = "",
) -> Added:
    """Put E.164 ``numbers`` on ``account``'s list (None: the system-wide
    list). Numbers already listed stay as they were (their date and source).
    Audited as an AccountEvent for an account's list."""
    with transaction.atomic():
        entries = [
            DncEntry(
                account=account,
                phone_number=number,
                source=source,
                added_by=actor.user,
                job_pk=job_pk,
                note=note[:255],
            )
            for number in numbers
        ]
        before = _count(account)
        DncEntry.objects.bulk_create(entries, ignore_conflicts=True, batch_size=2000)
        added = _count(account) - before
        if account is not None and added:
            AccountEvent.objects.create(
                account=account,
                account_slug=account.slug,
                action=AccountEvent.Action.DNC_ADDED,
                **actor.audit_fields(),
                changes={
                    "added": added,
                    "source": source,
                    "numbers": numbers[:20],
                    "note": note[:255],
                },
            )
    logger.info(
        "numbers added to a do-not-call list",
        extra={
            "action": "dnc.added",
            "account": account.slug if account else "(system)",
            "added": added,
            "source": source,
        },
    )
    return Added(added=added, already=len(numbers) - added)


def _count(account: Account | None) -> int:
    return DncEntry.objects.filter(account=account).count()


def dnc_remove(*, account: Account, phone_number: str, actor: Actor) -> bool:
    """Take a number off the account's list; False if it was not on it."""
    with transaction.atomic():
        deleted, _ = DncEntry.objects.filter(
            account=account, phone_number=phone_number
        ).delete()
        if deleted:
            AccountEvent.objects.create(
                account=account,
                account_slug=account.slug,
                action=AccountEvent.Action.DNC_REMOVED,
                **actor.audit_fields(),
                changes={"removed": phone_number},
            )
    return bool(deleted)


def dnc_cancel_open_jobs(
    *,
    account_id: int,
    phone_number: str,
    actor: Actor,
    code: str,
    reason: str,
    exclude: int | None = None,
) -> list[int]:
    """Cancel the number's open jobs in the account (a call in progress is
    hung up at its worker's next lease renewal), audited; returns their ids."""
    with transaction.atomic():
        open_jobs = Job.objects.select_for_update().filter(
            account_id=account_id,
            phone_number=phone_number,
            status__in=NON_TERMINAL_STATUSES,
        )
        if exclude is not None:
            open_jobs = open_jobs.exclude(pk=exclude)
        jobs = list(open_jobs.order_by("pk"))
        if not jobs:
            return []
        now = timezone.now()
        before = {job.pk: job.status for job in jobs}
        transitions.update(
            "cancel",
            pk__in=before,
            values={
                "stop_code": code,
                "cancel_reason": reason[:255],
                "finished_at": now,
                "updated_at": now,
            },
        )
        JobEvent.objects.bulk_create(
            [
                JobEvent(
                    job_id=job.pk,
                    job_pk=job.pk,
                    account_id=account_id,
                    action="cancelled",
                    **actor.audit_fields(),
                    changes={
                        "status": [before[job.pk], JobStatus.CANCELLED],
                        "code": code,
                    },
                    reason=reason[:255],
                )
                for job in jobs
            ]
        )
        for job in jobs:
            transitions.reflect(job, "cancel")
        send_jobs_finished_on_commit([(job, None) for job in jobs])
    return [job.pk for job in jobs]


def job_opt_out(
    *, job: Job, actor: Actor, during_call: bool = False
) -> tuple[Added, list[int]]:
    """The person at ``job``'s number asked not to be called again: the
    number goes on the account's list at once, and its open jobs in the
    account are cancelled (stop code ``opt_out``). ``during_call``: the
    dialer reported it, and ``job`` itself is being recorded by its worker,
    so it is left to that."""
    with transaction.atomic():
        account = Account.objects.get(pk=job.account_id)
        added = dnc_add(
            account=account,
            numbers=[job.phone_number],
            actor=actor,
            source=DncSource.OPT_OUT,
            job_pk=job.pk,
            note=f"opt-out during the call of job {job.pk}",
        )
        cancelled = dnc_cancel_open_jobs(
            account_id=job.account_id,
            phone_number=job.phone_number,
            actor=actor,
            code=OPT_OUT_CODE,
            reason=f"Opted out (job {job.pk})",
            exclude=job.pk if during_call else None,
        )
    logger.info(
        "opt-out: number on the account's do-not-call list",
        extra={
            "action": "dnc.opt_out",
            "job_id": job.pk,
            "cancelled": cancelled,
            "source": actor.source,
        },
    )
    return added, cancelled


def dnc_lookup(job: Job) -> list[DncEntry]:
    """The entries (the account's, the system's) that list the job's number."""
    return list(
        DncEntry.objects.filter(
            Q(account_id=job.account_id) | Q(account__isnull=True),
            phone_number=job.phone_number,
        ).order_by("created_at")
    )
