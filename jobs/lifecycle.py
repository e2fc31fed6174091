"""The worker's transitions of a job: dial, lease renewal, outcome, recovery.

Every write here is conditional on the current state (``status`` and
``claimed_by``), so a job cancelled, deleted or recovered by someone else in
the meantime is never overwritten, and two workers recovering the same
expired lease cannot both act on it.

Crash policy, applied when a lease expires (the worker died or lost the
database for longer than the lease; docs/architecture.md#crash-policy-leases):

* claimed but never dialled (``dialed_at IS NULL``): back to ``pending``; no
  attempt was spent;
* dialled: the call may have connected, so it is never redialled silently.
  The job becomes ``failed`` with ``last_error = "worker lost"``, unless the
  dialer confirms the call never connected; then it goes back to ``pending``
  and the attempt is given back.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Max
from django.db.models.functions import Now
from django.utils import timezone

from callcenter import metrics
from jobs import breaker, transitions
from jobs.dialers.base import CallResult, CallStatus, Dialer, Outcome
from jobs.history import call_record_add_call
from jobs.models import CallAttempt, Job, JobStatus
from jobs.notify import notify_jobs_available
from jobs.pacing import Pacing, Slot
from jobs.rules.retries import retry_delay
from jobs.signals import send_jobs_finished_on_commit

logger = logging.getLogger(__name__)

WORKER_LOST = "worker lost"
WORKER_STOPPED = "worker stopped during the call"
ERROR_AFTER_DIAL = "error after the call was placed, not retried"
SUCCESS_OUTCOMES = frozenset({Outcome.ANSWERED, Outcome.VOICEMAIL})


def _log(message: str, **fields: Any) -> None:
    logger.info(message, extra=fields)


def _finished(job: Job, outcome: str | None) -> None:
    send_jobs_finished_on_commit([(job, outcome)])


def retry_at(
    job: Job, *, outcome: str, never_connected: bool, now: datetime
) -> datetime | None:
    """When the job is tried again after ``outcome``, or None if it is not:
    the batch's retry policy (jobs/rules/retries.py) gives the delay, and the
    retry waits for the calling window's next opening if that is later."""
    from jobs.rules.calling_window import opening_at_or_after

    policy = (
        Job.objects.filter(pk=job.pk)
        .values_list("batch__retry_policy", flat=True)
        .first()
        if job.batch_id is not None
        else None
    )
    delay = retry_delay(policy, outcome, never_connected=never_connected)
    if delay is None:
        return None
    when = now + timedelta(seconds=delay)
    # A window that never opens (unknown zone): the retry is due after its
    # delay, and the dial gate refuses the job then, with the reason.
    return opening_at_or_after(job, when) or when


def fenced_write_refused(
    write: str, *, job_ids: Iterable[int], worker_id: str, token: str
) -> None:
    """Count and log writes about claimed jobs that the fence refused: the
    job is no longer this claim's (its lease expired and another worker
    recovered it, or it was cancelled or deleted). Each log line carries
    both tokens, the writer's and the current holder's, so a stale worker
    after a partition can be told from a cancel. Runs only on refusal."""
    ids = list(job_ids)
    if not ids:
        return
    metrics.FENCED_WRITES_REFUSED.labels(write=write).inc(len(ids))
    now_held = {
        pk: (holder, holder_token, status)
        for pk, holder, holder_token, status in Job.objects.filter(
            id__in=ids
        ).values_list("id", "claimed_by", "claim_token", "status")
    }
    for job_id in ids:
        holder, holder_token, status = now_held.get(job_id, ("", "", "deleted"))
        logger.warning(
            "fenced write refused: the job is no longer this claim's",
            extra={
                "action": "job.fenced_write_refused",
                "write": write,
                "job_id": job_id,
                "worker_id": worker_id,
                "token": token,
                "holder": holder,
                "holder_token": holder_token,
                "status": status,
            },
        )


def mark_dialed(
    *,
    jobs: list[Job],
    worker_id: str,
    token: str = "",
    dialer: str = "",
    pace: Pacing | None = None,
    slot: Slot | None = None,
) -> list[Job]:
    """Record that these claimed jobs are about to be dialled (an attempt
    spent, a ``CallAttempt`` row written with its fencing token in
    ``job.attempt_token``) and check every dialing rule in the same
    transaction: the dial gate, jobs/rules/gate.py. Returns the jobs to dial
    now.

    Runs after the claim committed and before the dialer is asked to call, so
    a crash in between is told apart from a crash during the call.
    """
    from jobs.rules.gate import mark_dialed as gate

    return gate(
        jobs=jobs, worker_id=worker_id, token=token, dialer=dialer, pace=pace, slot=slot
    )


def record_call_id(
    *,
    job_id: int,
    worker_id: str,
    call_id: str,
    token: str = "",
    attempt_token: str = "",
) -> None:
    """Store the provider's call id, so recovery can ask about the call."""
    Job.objects.filter(
        pk=job_id,
        status=JobStatus.IN_PROGRESS,
        claimed_by=worker_id,
        claim_token=token,
    ).update(call_id=call_id[:200])
    if attempt_token:
        CallAttempt.objects.filter(token=attempt_token, provider_call_id="").update(
            provider_call_id=call_id[:64]
        )


def renew_leases(
    *,
    worker_id: str,
    job_ids: Iterable[int],
    lease_seconds: int | None = None,
    token: str = "",
) -> set[int]:
    """Extend the leases of the jobs this worker holds.

    Returns the ids it no longer holds: cancelled, deleted, or recovered by
    another worker. The caller hangs those calls up.
    """
    ids = list(job_ids)
    if not ids:
        return set()
    lease = lease_seconds or settings.JOB_LEASE_SECONDS
    held = Job.objects.filter(
        id__in=ids,
        status=JobStatus.IN_PROGRESS,
        claimed_by=worker_id,
        claim_token=token,
    )
    renewed = held.update(lease_expires_at=Now() + timedelta(seconds=lease))
    metrics.LEASE_RENEWALS.inc(renewed)
    if renewed == len(ids):
        return set()
    lost = set(ids) - set(held.values_list("id", flat=True))
    fenced_write_refused("renew", job_ids=lost, worker_id=worker_id, token=token)
    return lost


def _attempt_entry(
    end: CallEnd, *, worker_id: str, ended_at: datetime
) -> dict[str, Any]:
    """A recorded call in the attempt log, less its attempt number (which
    the job's row holds). ``dialed_at`` is what makes recording idempotent."""
    dial_key = end.dialed_at.isoformat()
    return {
        "outcome": end.result.outcome,
        "started_at": dial_key,
        "ended_at": ended_at.isoformat(),
        "duration_seconds": round(end.result.duration_seconds, 3),
        "worker": worker_id,
        "call_id": end.call_id,
        "error": end.result.error,
        "hung_up": end.result.hung_up,
        "dialed_at": dial_key,
    }


def _log_call_ended(
    job: Job, *, worker_id: str, outcome: str, status_before: str, held: bool = True
) -> None:
    if held:
        metrics.CALLS_ENDED.labels(
            outcome=outcome,
            batch=metrics.bounded("batch", job.batch_id),
            account=metrics.bounded("account", job.account_id),
        ).inc()
    _log(
        "call ended" if held else "call ended for a job no longer held",
        action="job.call_ended" if held else "job.call_ended_unheld",
        job_id=job.pk,
        batch_id=job.batch_id,
        worker_id=worker_id,
        outcome=outcome,
        status_before=status_before,
        status=job.status,
        attempt=job.attempts,
        call_id=job.call_id,
    )


@dataclass(frozen=True)
class CallEnd:
    """A call that ended, as the worker reports it to ``record_calls``."""

    job_id: int
    dialed_at: datetime
    call_id: str
    result: CallResult
    interrupted: str = ""
    # The CallAttempt's fencing token, whose row gets the outcome too.
    attempt_token: str = ""


def record_call(
    *,
    job_id: int,
    worker_id: str,
    dialed_at: datetime,
    call_id: str,
    result: CallResult,
    interrupted: str = "",
    token: str = "",
) -> str:
    """Record a finished call's outcome and move the job on.

    * held by this worker: answered or voicemail -> completed; failed ->
      failed; busy, no_answer or error -> scheduled for a retry after an
      exponential backoff, or failed once ``max_attempts`` is used up. A call
      hung up because the worker is stopping (``interrupted``) that had
      connected -> failed with that reason.
    * no longer held (cancelled or deleted mid-call, recovered after a lost
      lease): the status stays as it is; the outcome is kept in ``result`` and
      the attempt log.

    Idempotent: an attempt already logged (same worker and dial time) is not
    recorded twice, so a retry after a lost database connection is safe.
    Returns the resulting status, or "gone" when the row no longer exists.
    """
    end = CallEnd(job_id, dialed_at, call_id, result, interrupted)
    return record_calls(worker_id=worker_id, ended=[end], token=token)[job_id]


def record_calls(
    *, worker_id: str, ended: list[CallEnd], token: str = ""
) -> dict[int, str]:
    """``record_call`` for every call that ended in one round of the worker.

    The common case, a held job whose call succeeded, is one statement for
    all of them; the rest go one by one through the general path. Returns the
    resulting status of each job id.
    """
    now = timezone.now()
    statuses: dict[int, str] = {}
    common = [
        end
        for end in ended
        if not end.interrupted and end.result.outcome in SUCCESS_OUTCOMES
    ]
    if common and connection.vendor == "postgresql":
        statuses.update(
            _record_successes(common, worker_id=worker_id, token=token, now=now)
        )
    failed_in: set[int] = set()
    for end in ended:
        if end.job_id not in statuses:
            statuses[end.job_id], batch_id = _record_one(
                end, worker_id=worker_id, token=token, now=now
            )
            if batch_id is not None and end.result.outcome in breaker.FAILURES:
                failed_in.add(batch_id)
    # A failed call may trip its batch's circuit breaker: read only then,
    # after the outcome has committed (a statement more in such a round).
    breaker.check(failed_in)
    return statuses


def _record_one(
    end: CallEnd, *, worker_id: str, token: str, now: datetime
) -> tuple[str, int | None]:
    """The general path: lock the row, append the attempt, apply the outcome.
    Returns the job's status, and its batch when the outcome was applied."""
    job_id, dialed_at, call_id = end.job_id, end.dialed_at, end.call_id
    result, interrupted = end.result, end.interrupted
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None:
            # Deleted mid-call: its call record keeps the outcome instead.
            kept = call_record_add_call(
                job_pk=job_id,
                entry=_attempt_entry(end, worker_id=worker_id, ended_at=now),
            )
            _log(
                "call ended for a job that no longer exists",
                action="job.call_orphaned",
                job_id=job_id,
                worker_id=worker_id,
                outcome=result.outcome,
                call_record=kept,
            )
            return "gone", None
        dial_key = dialed_at.isoformat()
        for entry in job.attempt_log or []:
            if entry.get("worker") == worker_id and entry.get("dialed_at") == dial_key:
                return job.status, None
        entry = {
            "attempt": job.attempts,
            **_attempt_entry(end, worker_id=worker_id, ended_at=now),
        }
        job.attempt_log = [*(job.attempt_log or []), entry]
        job.result = {**result.as_dict(), "call_id": call_id, "attempt": job.attempts}
        if call_id:
            job.call_id = call_id[:200]
        fields = ["attempt_log", "result", "call_id", "updated_at"]
        # The fence: the job is still in this dial (same claim, same dial
        # time). A job recovered or retried and dialled again since then
        # has another dial time, so a late outcome of this call changes
        # nothing but its own attempt.
        held = (
            job.status == JobStatus.IN_PROGRESS
            and job.claimed_by == worker_id
            and job.claim_token == token
            and job.dialed_at == dialed_at
        )
        before = job.status
        if held:
            op, more = _apply_outcome(
                job, result=result, interrupted=interrupted, now=now
            )
            transitions.save(job, op, fields=[*fields, *more])
        else:
            job.save(update_fields=fields)
        _attempt_ended(end, now=now)
        if held and job.is_terminal:
            _finished(job, result.outcome)
    if not held:
        fenced_write_refused(
            "outcome", job_ids=[job_id], worker_id=worker_id, token=token
        )
    _log_call_ended(
        job,
        worker_id=worker_id,
        outcome=result.outcome,
        status_before=before,
        held=held,
    )
    return job.status, (job.batch_id if held else None)


def _attempt_ended(end: CallEnd, *, now: datetime) -> None:
    """The attempt's row gets the outcome the job's attempt log got."""
    if not end.attempt_token:
        return
    changes: dict[str, Any] = {
        "outcome": end.result.outcome,
        "ended_at": now,
        "duration_seconds": round(end.result.duration_seconds, 3),
        "error": end.result.error,
    }
    if end.call_id:
        changes["provider_call_id"] = end.call_id[:64]
    CallAttempt.objects.filter(token=end.attempt_token, ended_at__isnull=True).update(
        **changes
    )


def _record_successes(
    ended: list[CallEnd], *, worker_id: str, token: str, now: datetime
) -> dict[int, str]:
    """The common case in one statement: held jobs whose calls succeeded.

    The general path (row lock, read, append, save) took four round trips
    per call, most of a no-op call's cost in the bench; this is one for all
    the calls of a round. Jobs it does not return (not held, or the attempt
    already recorded) are left to the general path, which handles those.
    """
    entries, results, seen = [], [], []
    for end in ended:
        entry = _attempt_entry(end, worker_id=worker_id, ended_at=now)
        entries.append(json.dumps(entry))
        results.append(json.dumps({**end.result.as_dict(), "call_id": end.call_id}))
        seen.append(
            json.dumps([{"worker": worker_id, "dialed_at": entry["dialed_at"]}])
        )
    params: dict[str, Any] = {
        "ids": [end.job_id for end in ended],
        "entries": entries,
        "results": results,
        "call_ids": [end.call_id[:200] for end in ended],
        "seen": seen,
        "dialed": [end.dialed_at for end in ended],
        "attempt_tokens": [end.attempt_token for end in ended],
        "outcomes": [end.result.outcome for end in ended],
        "durations": [round(end.result.duration_seconds, 3) for end in ended],
        "now": now,
        "worker_id": worker_id,
        "token": token,
    }
    # One statement: autocommit makes it its own transaction, with no BEGIN
    # and COMMIT round trips; jobs_finished is sent once it has committed.
    completed = transitions.complete_successes(params)
    outcomes = {end.job_id: end.result.outcome for end in ended}
    finished: list[tuple[Job, str | None]] = []
    for job in completed:
        finished.append((job, outcomes[job.pk]))
        _log_call_ended(
            job,
            worker_id=worker_id,
            outcome=outcomes[job.pk],
            status_before=JobStatus.IN_PROGRESS,
        )
    send_jobs_finished_on_commit(finished)
    return {job.pk: job.status for job, _ in finished}


def _apply_outcome(
    job: Job, *, result: CallResult, interrupted: str, now: datetime
) -> tuple[str, list[str]]:
    """Which transition the outcome makes (jobs/transitions.py) and the
    fields it sets on ``job`` beside the status."""
    outcome = result.outcome
    job.lease_expires_at = None
    fields = ["lease_expires_at", "finished_at", "last_error"]
    retry = None
    if not interrupted and outcome != Outcome.ANSWERED:
        retry = retry_at(
            job, outcome=outcome, never_connected=result.never_connected, now=now
        )
    if interrupted and outcome in SUCCESS_OUTCOMES:
        op = "fail"
        job.last_error = interrupted
    elif retry is not None and job.attempts < job.max_attempts:
        job.scheduled_at = retry
        job.last_error = result.error or outcome
        job.claimed_by = ""
        job.claimed_at = None
        job.dialed_at = None
        job.finished_at = None
        return "retry", [
            *fields,
            "scheduled_at",
            "claimed_by",
            "claimed_at",
            "dialed_at",
        ]
    elif outcome in SUCCESS_OUTCOMES:
        # Answered, or a voicemail the policy does not retry (or with no
        # attempt left): a message was left.
        op = "complete"
        job.last_error = ""
    elif outcome == Outcome.ERROR and not result.never_connected:
        # The crash policy's rule for a live worker: a call that may have
        # connected is never dialled again on a guess.
        op = "fail"
        job.last_error = f"{ERROR_AFTER_DIAL}: {result.error or outcome}"
    elif retry is not None:
        op = "fail"
        job.last_error = f"{outcome}: attempts exhausted ({job.attempts})"
    else:
        op = "fail"
        job.last_error = result.error or outcome
    job.finished_at = now
    return op, fields


def release_orphans(*, worker_id: str, token: str, keep_ids: Iterable[int]) -> int:
    """Hand back jobs this worker process holds but has no call for.

    After a lost database connection the worker cannot tell whether its last
    claim or dial mark committed. It places a call only after both did, so a
    job it claimed (under its own claim token) without a call in flight was
    certainly never dialled: it goes back to ``pending`` and any attempt spent
    on it is given back. Jobs claimed under the same worker id by another
    process (an earlier one, or one wrongly started with the same id) carry
    another token and are left alone: that process may have dialled them, and
    lease expiry resolves them by the crash policy if it is gone.
    """
    keep = list(keep_ids)
    orphans = Job.objects.filter(
        status=JobStatus.IN_PROGRESS, claimed_by=worker_id, claim_token=token
    ).exclude(id__in=keep)
    with transaction.atomic():
        ids = list(orphans.select_for_update().values_list("id", flat=True))
        if not ids:
            return 0
        dialled = Job.objects.filter(id__in=ids, dialed_at__isnull=False).update(
            attempts=F("attempts") - 1
        )
        count = transitions.update(
            "release",
            id__in=ids,
            values={
                "claimed_by": "",
                "claimed_at": None,
                "lease_expires_at": None,
                "dialed_at": None,
                "updated_at": Now(),
            },
        )
        notify_jobs_available()
    _log(
        "released jobs held without a call",
        action="job.released",
        worker_id=worker_id,
        job_ids=ids,
        refunded_attempts=dialled,
    )
    return count


def other_processes_holding(
    *, worker_id: str, token: str
) -> dict[str, tuple[datetime, datetime]]:
    """Live leases held under ``worker_id`` by another process (another claim
    token): for each token, its latest claim and its latest lease expiry.

    A worker id must be unique; a second process started with the same id is
    a configuration error that the worker reports (see ``CallWorker``).
    """
    rows = (
        Job.objects.filter(
            status=JobStatus.IN_PROGRESS,
            claimed_by=worker_id,
            lease_expires_at__gt=Now(),
        )
        .exclude(claim_token=token)
        .order_by()
        .values("claim_token")
        .annotate(claimed=Max("claimed_at"), lease=Max("lease_expires_at"))
    )
    return {r["claim_token"]: (r["claimed"], r["lease"]) for r in rows}


def recover_expired_leases(
    *,
    recoverer: str,
    dialer: Dialer | None = None,
    limit: int = 500,
    own_token: str = "",
) -> int:
    """Resolve in-progress jobs whose lease expired, by the crash policy.

    Safe to run from any number of workers at once: rows are taken with
    ``FOR UPDATE SKIP LOCKED`` and every update re-checks the expiry. A
    worker passes its ``own_token``: its own jobs are not lost, it renews
    their leases (or releases them) as soon as it reaches the database.
    """
    recovered = 0
    expired = Job.objects.filter(
        status=JobStatus.IN_PROGRESS, lease_expires_at__lt=Now()
    )
    if own_token:
        expired = expired.exclude(claim_token=own_token)
    with transaction.atomic():
        ids = list(
            expired.filter(dialed_at__isnull=True)
            .select_for_update(skip_locked=True)
            .order_by("lease_expires_at")
            .values_list("id", flat=True)[:limit]
        )
        if ids:
            recovered += transitions.update(
                "release",
                id__in=ids,
                values={
                    "claimed_by": "",
                    "claimed_at": None,
                    "lease_expires_at": None,
                    "updated_at": Now(),
                },
            )
            notify_jobs_available()
            _log(
                "expired leases of undialled jobs: back to pending",
                action="job.lease_recovered",
                job_ids=ids,
                worker_id=recoverer,
                policy="undialled->pending",
            )
    candidates = list(
        expired.filter(dialed_at__isnull=False)
        .order_by("lease_expires_at")
        .values_list("id", "call_id")[:limit]
    )
    for job_id, call_id in candidates:
        # Ask the provider outside any transaction: it may be slow.
        status = CallStatus.UNKNOWN
        if dialer is not None and call_id:
            try:
                status = dialer.call_status(call_id)
            except Exception:
                logger.exception(
                    "dialer could not report a call's status",
                    extra={"action": "job.call_status_error", "job_id": job_id},
                )
        if status == CallStatus.RUNNING:
            # Still at the provider (an asynchronous call whose worker
            # left): its callback will end it; leave it alone meanwhile.
            Job.objects.filter(
                pk=job_id,
                status=JobStatus.IN_PROGRESS,
                lease_expires_at__lt=Now(),
                call_id=call_id,
            ).update(
                lease_expires_at=Now() + timedelta(seconds=settings.JOB_LEASE_SECONDS)
            )
            continue
        recovered += _recover_dialled(
            job_id, call_id=call_id, status=status, recoverer=recoverer
        )
    metrics.LEASES_RECOVERED.inc(recovered)
    return recovered


def _recover_dialled(job_id: int, *, call_id: str, status: str, recoverer: str) -> int:
    now = timezone.now()
    with transaction.atomic():
        # Still the call the provider was asked about: the answer may have
        # been slow, and the job recovered and claimed again meanwhile.
        job = (
            Job.objects.select_for_update(skip_locked=True)
            .filter(
                pk=job_id,
                status=JobStatus.IN_PROGRESS,
                lease_expires_at__lt=Now(),
                call_id=call_id,
            )
            .first()
        )
        if job is None:
            return 0
        lost_worker = job.claimed_by
        entry = {
            "attempt": job.attempts,
            "outcome": "never_connected"
            if status == CallStatus.NEVER_CONNECTED
            else "worker_lost",
            "started_at": job.dialed_at.isoformat() if job.dialed_at else None,
            "ended_at": None,
            "worker": lost_worker,
            "call_id": job.call_id,
            "error": WORKER_LOST,
            "recovered_by": recoverer,
        }
        job.attempt_log = [*(job.attempt_log or []), entry]
        job.lease_expires_at = None
        if status == CallStatus.NEVER_CONNECTED:
            op = "release"
            job.attempts = max(job.attempts - 1, 0)
            job.claimed_by = ""
            job.claimed_at = None
            job.dialed_at = None
            policy = "dialled,never connected->pending"
            notify_jobs_available()
        else:
            op = "fail"
            job.last_error = WORKER_LOST
            job.finished_at = now
            policy = "dialled->failed"
        transitions.save(job, op)
        if op == "fail":
            _finished(job, None)
    _log(
        "expired lease of a dialled job resolved",
        action="job.lease_recovered",
        job_id=job.pk,
        batch_id=job.batch_id,
        worker_id=recoverer,
        lost_worker=lost_worker,
        policy=policy,
        status=job.status,
    )
    return 1
