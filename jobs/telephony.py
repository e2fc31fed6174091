"""Provider events applied to call attempts: the one path by which a call
placed by a worker and completed by a provider's callback moves its job on.

A provider (Twilio's status callbacks, the simulated dialer in ``callback``
mode) reports each event of a call with the attempt's fencing token. Every
event is stored on the attempt (``events``), duplicates and late ones
included; only the first terminal event ends the attempt, and only while the
job is still in that dial does it move the job on, through
``lifecycle.record_calls``: the same retries, credits settlement, batch
completion and webhooks as a call that ended in the worker
(docs/telephony.md#how-a-call-completes).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from callcenter.actor import Actor
from jobs import billing, dnc, lifecycle
from jobs.dialers.base import CallResult
from jobs.models import CallAttempt, Job

logger = logging.getLogger(__name__)

# The order of a call's non-terminal states: an event never moves an attempt
# back (a "ringing" delivered after "in-progress" is stored and ignored).
PROGRESS_RANK = {"": 0, "queued": 1, "initiated": 2, "ringing": 3, "in-progress": 4}
MAX_EVENTS = 50
# Why a call of a batch cancelled or deleted was hung up, or left to finish.
BATCH_CANCELLED_HANGUP = "batch cancelled"
BATCH_DELETED_HANGUP = "batch deleted"
NOT_ANSWERED = "not answered yet: hung up"
ANSWERED = "answered: left to finish"


class Applied:
    UNKNOWN = "unknown"  # no attempt with that token: logged, acknowledged
    PROGRESS = "progress"  # a non-terminal event, recorded
    IGNORED = "ignored"  # stored only: duplicate, out of order, or after the end
    ENDED = "ended"  # the attempt's terminal event


@dataclass
class ProviderEvent:
    """One event of a call, as the provider reported it."""

    status: str
    call_id: str = ""
    raw: dict[str, Any] = field(default_factory=dict)
    answered_by: str = ""
    # Set on a terminal event only: how the call ended.
    result: CallResult | None = None

    @property
    def terminal(self) -> bool:
        return self.result is not None


def apply_event(*, token: str, event: ProviderEvent) -> str:
    """Store ``event`` on the attempt with ``token`` and apply it.

    Idempotent and monotonic: a terminal status is final. Returns what
    happened (``Applied``).
    """
    now = timezone.now()
    settle: tuple[Job, float, str] | None = None
    with transaction.atomic():
        attempt = CallAttempt.objects.select_for_update().filter(token=token).first()
        if attempt is None:
            logger.warning(
                "provider event for an unknown call attempt",
                extra={
                    "action": "telephony.unknown_attempt",
                    "call_id": event.call_id,
                    "status": event.status,
                },
            )
            return Applied.UNKNOWN
        fields = ["events"]
        attempt.events = [
            *attempt.events[-(MAX_EVENTS - 1) :],
            {"received_at": now.isoformat(), "status": event.status, **event.raw},
        ]
        if event.call_id and not attempt.provider_call_id:
            attempt.provider_call_id = event.call_id[:64]
            fields.append("provider_call_id")
        applied = Applied.IGNORED
        if attempt.ended_at is None:
            if event.answered_by:
                attempt.answered_by = event.answered_by[:32]
                fields.append("answered_by")
            if event.terminal:
                applied = Applied.ENDED
            elif PROGRESS_RANK.get(event.status, 0) > PROGRESS_RANK.get(
                attempt.provider_status, 0
            ):
                applied = Applied.PROGRESS
                attempt.provider_status = event.status[:32]
                fields.append("provider_status")
                if event.status == "in-progress" and attempt.answered_at is None:
                    attempt.answered_at = now
                    fields.append("answered_at")
        if applied == Applied.ENDED:
            assert event.result is not None
            settle = _end(attempt, event, event.result, now=now)
            fields += ["provider_status", "outcome", "ended_at", "duration_seconds"]
            fields += ["error", "cost"]
        attempt.save(update_fields=fields)
    if settle is not None:
        # After the commit, as the worker settles after its record: keyed
        # by the claim, so a repeat charges once.
        billing.settle_calls([settle])
        if event.result is not None and event.result.opt_out:
            _opt_out(settle[0].pk)
    logger.info(
        "provider event applied",
        extra={
            "action": "telephony.event",
            "job_id": attempt.job_id,
            "attempt": attempt.attempt,
            "status": event.status,
            "applied": applied,
        },
    )
    return applied


def _end(
    attempt: CallAttempt, event: ProviderEvent, result: CallResult, *, now: datetime
) -> tuple[Job, float, str] | None:
    """The attempt's terminal event: record the outcome on the attempt, and
    on the job if the job is still in this dial (``record_calls`` checks)."""
    from accounts.credits import call_cost

    attempt.provider_status = event.status[:32]
    attempt.outcome = result.outcome
    attempt.ended_at = now
    attempt.duration_seconds = round(result.duration_seconds, 3)
    attempt.error = result.error
    attempt.cost = call_cost(
        duration_seconds=result.duration_seconds, outcome=result.outcome
    )
    lifecycle.record_calls(
        worker_id=attempt.worker_id,
        token=attempt.claim_token,
        ended=[
            lifecycle.CallEnd(
                job_id=attempt.job_id,
                dialed_at=attempt.started_at,
                call_id=attempt.provider_call_id or event.call_id,
                result=result,
            )
        ],
    )
    account_id = (
        Job.objects.filter(pk=attempt.job_id)
        .values_list("account_id", flat=True)
        .first()
    )
    if account_id is None:
        return None  # the job was deleted; its reservation stays charged
    # The settlement's key is the claim the call was reserved under.
    job = Job(pk=attempt.job_id, account_id=account_id, claimed_at=attempt.claimed_at)
    return job, result.duration_seconds, result.outcome


def _opt_out(job_id: int) -> None:
    """The person asked the agent not to be called again: as when a worker
    records such a call, the number goes on the account's do-not-call list
    and its other open jobs are cancelled (jobs/dnc.py)."""
    job = Job.objects.filter(pk=job_id).first()
    if job is not None:
        dnc.job_opt_out(
            job=job, actor=Actor.system("provider callback"), during_call=True
        )


def attempts_ended(tokens: list[str]) -> set[str]:
    """Which of these attempts have their terminal event."""
    return set(
        CallAttempt.objects.filter(
            token__in=tokens, ended_at__isnull=False
        ).values_list("token", flat=True)
    )


def attempt_hangup_requested(*, token: str, reason: str) -> None:
    """Record on the attempt that its call was asked to hang up, and why."""
    CallAttempt.objects.filter(token=token, hangup_requested_at__isnull=True).update(
        hangup_requested_at=timezone.now(), hangup_reason=reason[:255]
    )


def attempt_left_to_finish(*, token: str, reason: str) -> None:
    """Record on the attempt that its call was answered when its batch was
    cancelled or deleted, and so left to finish: ``hangup_reason`` says so,
    ``hangup_requested_at`` stays empty (no hang-up was requested)."""
    CallAttempt.objects.filter(
        token=token, hangup_requested_at__isnull=True, hangup_reason=""
    ).update(hangup_reason=reason[:255])


def attempt_answered(token: str) -> bool:
    """Whether the attempt's events say its call was answered."""
    return (
        CallAttempt.objects.filter(token=token)
        .filter(Q(answered_at__isnull=False) | Q(provider_status="in-progress"))
        .exists()
    )


def stopped_batches(batch_pks: Iterable[int | None]) -> dict[int, str]:
    """Which of these batches were cancelled or deleted: each one's reason
    for hanging up its calls. (Read by table name: jobs sits below batches.)"""
    pks = sorted({pk for pk in batch_pks if pk is not None})
    if not pks:
        return {}
    marks = ", ".join(["%s"] * len(pks))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, deleted_at IS NOT NULL FROM batches_batch"
            f" WHERE id IN ({marks})"
            " AND (cancelled_at IS NOT NULL OR deleted_at IS NOT NULL)",
            pks,
        )
        rows = cursor.fetchall()
    return {
        int(pk): BATCH_DELETED_HANGUP if deleted else BATCH_CANCELLED_HANGUP
        for pk, deleted in rows
    }
