"""Pacing and capacity that every worker process shares, on every host.

A provider account accepts so many call requests per second (Twilio: 1 by
default) and, on some accounts, so many calls at once. Both limits hold for
all workers together, so they are kept in PostgreSQL, not in any process
(docs/telephony.md#pacing-and-capacity).

**Pacing: a send slot per call, from one row.** ``jobs_dialerpace`` holds,
per provider account, the next free send slot. A worker takes a slot with
one statement, on the database's clock::

    next_slot = greatest(clock_timestamp(), next_slot) + interval

and gets back the slot it was granted (the old value, or now when the row
was behind) and how long until it. The row lock serialises the takers, so
two granted slots are always at least ``interval`` apart, whichever process
or host took them. The worker then waits for its slot without holding
anything, and only then makes the last commit before the provider request
(the dial mark, jobs/rules/gate.py), which re-checks everything that may
have changed while it waited (the batch paused, the job cancelled, the
capacity below). A job that loses its slot there is simply not dialled:
the slot goes unused, which only makes the rate lower.

**The guard, and a second stage just before the request.** What the
provider counts is when a request arrives, after the slot: the dial mark's
synchronous commit and the hand-over to the request thread take
milliseconds, and on a loaded host a process can wait far longer for the
CPU. Slots ``1/cps`` apart would let a late request and an on-time one
``cps`` slots later fall into one second. So:

* the slots are ``(1 + DIALER_PACING_GUARD_SECONDS) / cps`` apart: ``cps +
  1`` consecutive slots span ``1 + guard`` seconds, and a request up to the
  guard late keeps every one-second window within the rate. A worker that
  reaches its slot more than half the guard late takes a fresh slot;
* right before the request, in the thread that sends it, ``send_permit``
  moves ``last_send`` on the same row to ``greatest(clock_timestamp(),
  last_send + interval)``, and the request waits for it. Usually that is no
  wait, or a short one; after a request that came late it is the
  difference, so a late request pushes the next one back instead of
  crowding it. What is left between the permit and the provider is the
  request itself, which the guard covers.

**Capacity: a count under a lock, in the commit that spends the attempt.**
``max_concurrent`` counts the dialer's attempts with no final status
(``ended_at`` empty): calls the provider may still have. The dial mark takes
a transaction-level advisory lock on the account, counts with a fresh
snapshot (READ COMMITTED: each statement sees every commit made before the
lock was granted), and marks at most the room left; the jobs beyond it are
deferred in the same transaction, no attempt spent, their claim released,
audited as ``concurrency_cap``, and come back within a second. The worker
also reads the room before it claims, so a full account is not claimed
from at all; that read is only a hint, the mark is the rule.

SQLite (``make run``) has one writer at a time, so the same rules need no
lock there: the slot is read and moved in one IMMEDIATE transaction.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models.functions import Now
from django.utils import timezone

from jobs import transitions
from jobs.models import CallAttempt, DialerPace, Job, JobStatus
from jobs.rules import Defer

logger = logging.getLogger(__name__)

# Advisory-lock class of the capacity count ('pace').
CAPACITY_LOCK_CLASS = 0x70616365
# A job deferred because the provider account is at capacity comes back
# after this long (promoted by any worker within a second after that).
CAPACITY_RETRY = timedelta(seconds=1)

TAKE_SLOT_SQL = """
INSERT INTO jobs_dialerpace (key, next_slot)
VALUES (%(key)s, clock_timestamp() + make_interval(secs => %(interval)s))
ON CONFLICT (key) DO UPDATE
   SET next_slot = greatest(clock_timestamp(), jobs_dialerpace.next_slot)
                   + make_interval(secs => %(interval)s)
RETURNING next_slot - make_interval(secs => %(interval)s), clock_timestamp()
"""


SEND_PERMIT_SQL = """
INSERT INTO jobs_dialerpace (key, next_slot, last_send)
VALUES (%(key)s, clock_timestamp(), clock_timestamp())
ON CONFLICT (key) DO UPDATE
   SET last_send = greatest(
         clock_timestamp(),
         jobs_dialerpace.last_send + make_interval(secs => %(gap)s))
RETURNING last_send, clock_timestamp()
"""


@dataclass(frozen=True)
class Pacing:
    """A dialer's shared limits: requests per second and calls at once."""

    # The provider account the limits belong to ("twilio:AC…").
    key: str
    # Whose attempts count against ``max_concurrent`` (CallAttempt.dialer).
    dialer: str
    # 0: not paced.
    calls_per_second: float = 0.0
    # None: no cap.
    max_concurrent: int | None = None
    guard_seconds: float = 0.1

    @property
    def paced(self) -> bool:
        return self.calls_per_second > 0

    @property
    def interval(self) -> float:
        """Seconds between two granted slots (see the module on the guard)."""
        return (1.0 + self.guard_seconds) / self.calls_per_second

    @property
    def send_gap(self) -> float:
        """Least time between two requests let through by ``send_permit``:
        the slots' interval, so ``cps + 1`` of them span ``1 + guard``
        seconds whatever the lateness before the permit."""
        return self.interval

    @property
    def late(self) -> float:
        """A worker this late for its slot takes a fresh one."""
        return self.guard_seconds / 2

    @property
    def lock_key(self) -> int:
        return zlib.crc32(self.key.encode()) & 0x7FFFFFFF


@dataclass(frozen=True)
class Slot:
    """A granted send slot: when (the database's clock), and how long the
    worker had to wait for it when it was granted."""

    at: datetime
    wait: float


def take_slot(pacing: Pacing) -> Slot:
    """Take the provider account's next send slot (one statement)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                TAKE_SLOT_SQL, {"key": pacing.key, "interval": pacing.interval}
            )
            at, now = cursor.fetchone()
        return Slot(at=at, wait=max((at - now).total_seconds(), 0.0))
    with transaction.atomic():
        now = timezone.now()
        pace, _ = DialerPace.objects.select_for_update().get_or_create(
            key=pacing.key, defaults={"next_slot": now}
        )
        at = max(now, pace.next_slot)
        pace.next_slot = at + timedelta(seconds=pacing.interval)
        pace.save(update_fields=["next_slot"])
    return Slot(at=at, wait=max((at - now).total_seconds(), 0.0))


def send_permit(pacing: Pacing) -> Slot:
    """The second stage, just before the request: when to send, and how
    long to wait for it, so that this request comes at least ``send_gap``
    after the last one let through (one statement, on the database's
    clock). Usually no wait: the slots are wider; there is one when the
    request before came late."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(SEND_PERMIT_SQL, {"key": pacing.key, "gap": pacing.send_gap})
            at, now = cursor.fetchone()
        return Slot(at=at, wait=max((at - now).total_seconds(), 0.0))
    with transaction.atomic():
        now = timezone.now()
        pace, _ = DialerPace.objects.select_for_update().get_or_create(
            key=pacing.key, defaults={"next_slot": now}
        )
        at = now
        if pace.last_send is not None:
            at = max(now, pace.last_send + timedelta(seconds=pacing.send_gap))
        pace.last_send = at
        pace.save(update_fields=["last_send"])
    return Slot(at=at, wait=max((at - now).total_seconds(), 0.0))


def open_calls(pacing: Pacing) -> int:
    """The dialer's attempts with no final status: calls the provider may
    still have."""
    return CallAttempt.objects.filter(
        dialer=pacing.dialer, ended_at__isnull=True
    ).count()


def room_hint(pacing: Pacing) -> int | None:
    """How many more calls the account takes now, read without a lock: the
    worker's hint before it claims. None: no cap."""
    if pacing.max_concurrent is None:
        return None
    return max(pacing.max_concurrent - open_calls(pacing), 0)


def room(pacing: Pacing, want: int) -> int:
    """How many of ``want`` jobs the dial mark may mark now: in its
    transaction, under the account's lock, which it keeps until it commits
    (so the next mark counts this one's attempts)."""
    if pacing.max_concurrent is None:
        return want
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s, %s)",
                [CAPACITY_LOCK_CLASS, pacing.lock_key],
            )
    return max(min(want, pacing.max_concurrent - open_calls(pacing)), 0)


def defer_for_capacity(
    jobs: list[Job], *, pacing: Pacing, worker_id: str, token: str = ""
) -> dict[int, Defer]:
    """Hand back held jobs the account has no room for, in the dial mark's
    transaction: ``scheduled`` for CAPACITY_RETRY, no attempt spent, the
    claim released, audited (``deferred``, ``concurrency_cap``). The gate
    refunds their reservations after its commit. Returns their verdicts."""
    from callcenter.actor import Actor
    from jobs.caps import CONCURRENCY_CAP
    from jobs.models import JobEvent

    if not jobs:
        return {}
    until = timezone.now() + CAPACITY_RETRY
    verdict = Defer(
        CONCURRENCY_CAP,
        until,
        f"the provider account's {pacing.max_concurrent} concurrent calls are "
        "in progress",
    )
    verdicts: dict[int, Defer] = {}
    for job in jobs:
        if transitions.update(
            "defer",
            values={
                "scheduled_at": until,
                "claimed_by": "",
                "claim_token": "",
                "claimed_at": None,
                "lease_expires_at": None,
                "updated_at": Now(),
            },
            pk=job.pk,
            claimed_by=worker_id,
            claim_token=token,
            dialed_at__isnull=True,
        ):
            verdicts[job.pk] = verdict
    actor = Actor.worker(worker_id)
    JobEvent.objects.bulk_create(
        JobEvent(
            job_id=job.pk,
            job_pk=job.pk,
            account_id=job.account_id,
            action="deferred",
            **actor.audit_fields(),
            changes={
                "status": [JobStatus.IN_PROGRESS, JobStatus.SCHEDULED],
                "code": verdict.code,
                "until": until.isoformat(),
            },
            reason=verdict.detail,
        )
        for job in jobs
        if job.pk in verdicts
    )
    for job in jobs:
        if job.pk in verdicts:
            transitions.reflect(job, "defer")
            job.scheduled_at = until
    return verdicts


def record_slot(tokens: list[str], slot: Slot) -> None:
    """Keep the granted slot on the attempts it was used for."""
    CallAttempt.objects.filter(token__in=tokens).update(slot_at=slot.at)


def from_settings(*, key: str, dialer: str, cps: float, max_concurrent: int) -> Pacing:
    """A dialer's limits from its settings (0: none)."""
    from django.conf import settings

    return Pacing(
        key=key,
        dialer=dialer,
        calls_per_second=cps,
        max_concurrent=max_concurrent or None,
        guard_seconds=settings.DIALER_PACING_GUARD_SECONDS,
    )
