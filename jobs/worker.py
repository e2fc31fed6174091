"""The call worker: claims jobs, dials them, records outcomes, keeps leases.

The main thread does the database work of the calls in flight (claim, dial
mark, lease renewal, outcome, settlement), one unit at a time; call threads
only talk to the dialer and report back through a queue. Work that can be
slow (a recovery pass asking a provider about lost calls, the suspension
sweep of an account out of credits) runs in a ``Background`` thread, so that
it never delays a lease renewal. Each unit is a method
that returns whether it found work, so tests can drive the worker step by step
(healthchecks' sendalerts style), and ``close_old_connections()`` runs between
rounds so a dropped connection is replaced.

Idle workers wait on PostgreSQL LISTEN (a dedicated connection in a thread)
and poll at most once per WORKER_POLL_SECONDS as a fallback.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import logging
import math
import os
import queue
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import (
    InterfaceError,
    OperationalError,
    close_old_connections,
    connections,
)

from callcenter import metrics
from callcenter.actor import Actor
from jobs import billing, dnc, lifecycle, pacing, telephony
from jobs.claim import claim_jobs, promote_due_jobs
from jobs.counts import fold_job_counts
from jobs.dialers.base import (
    CallHandle,
    CallNotPlaced,
    CallRefused,
    CallResult,
    CallStatus,
    Dialer,
    Outcome,
    Unanswered,
)
from jobs.models import Job
from jobs.notify import BATCH_STOPPED_CHANNEL, CHANNEL

logger = logging.getLogger(__name__)

DB_ERRORS = (OperationalError, InterfaceError)
HANGUP_NOT_HELD = "job no longer held (cancelled, deleted or recovered)"
OUT_OF_CREDITS = "out of credits"
# After the shutdown timeout the calls are hung up; this is how long the
# worker then waits for them to report before leaving them to lease expiry.
HANGUP_GRACE_SECONDS = 10.0
SLICE = 0.2
# Connection options the LISTEN connection copies from DATABASES["OPTIONS"].
LIBPQ_OPTIONS = frozenset(
    {
        "sslmode",
        "sslrootcert",
        "sslcert",
        "sslkey",
        "connect_timeout",
        "options",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
    }
)


def database_now() -> datetime:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT CURRENT_TIMESTAMP")
        value = cursor.fetchone()[0]
    if isinstance(value, str):  # SQLite returns text, in UTC
        value = datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value


def lower_cpu_priority(increment: int) -> int:
    """Make this process ``increment`` nicer (Unix); return its niceness.

    A worker's calls wait on the network, but a host can still run out of
    CPU (many workers, no-op calls, a batch import); then the web process,
    where a supervisor clicks pause, should not queue behind the workers.
    The PostgreSQL backend serving the worker keeps its priority.
    """
    if not hasattr(os, "nice"):  # not Unix
        return 0
    return os.nice(max(increment, 0))


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(eq=False)
class Call:
    job: Job
    dialed_at: datetime
    # The worker's clock when the call was handed to the dialer, and the
    # minutes its account has paid for so far (see extend_reservations).
    started: float = 0.0
    reserved_minutes: int = 0
    unfunded: bool = False
    handle: CallHandle | None = None
    call_id: str = ""
    call_id_saved: bool = False
    hangup_reason: str = ""
    # The hang-up of a batch cancel or delete: only if not answered yet.
    unanswered_only: bool = False
    result: CallResult | None = None
    recorded: bool = False
    opted_out: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


def listen_params() -> dict[str, Any]:
    """The LISTEN connection's libpq parameters: LISTEN_DATABASE_URL's (a
    direct connection past a transaction-mode pooler), or the default
    database's."""
    if settings.LISTEN_DATABASE_URL:
        import dj_database_url

        s: dict[str, Any] = dict(dj_database_url.parse(settings.LISTEN_DATABASE_URL))
    else:
        s = connections["default"].settings_dict
    params: dict[str, Any] = {"dbname": s["NAME"], "autocommit": True}
    for key, name in (("USER", "user"), ("PASSWORD", "password")):
        if s.get(key):
            params[name] = s[key]
    for key, name in (("HOST", "host"), ("PORT", "port")):
        if s.get(key):
            params[name] = str(s[key])
    for key, value in (s.get("OPTIONS") or {}).items():
        if key in LIBPQ_OPTIONS:
            params[key] = value
    params["application_name"] = "callcenter-worker-listen"
    return params


class Listener(threading.Thread):
    """LISTEN on the jobs channel and poke the worker's inbox on each NOTIFY;
    pass on the batches cancelled or deleted (their calls are hung up)."""

    def __init__(self, inbox: queue.Queue[tuple[str, Any]], worker_id: str) -> None:
        super().__init__(name="listen", daemon=True)
        self.inbox = inbox
        self.worker_id = worker_id
        self.stopped = threading.Event()

    def run(self) -> None:
        import psycopg

        backoff = 0.5
        while not self.stopped.is_set():
            try:
                with psycopg.connect(**listen_params()) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    conn.execute(f"LISTEN {BATCH_STOPPED_CHANNEL}")
                    # Something may have become claimable while we were away.
                    self.inbox.put(("notify", None))
                    backoff = 0.5
                    while not self.stopped.is_set():
                        for note in conn.notifies(timeout=0.5, stop_after=1):
                            if note.channel != BATCH_STOPPED_CHANNEL:
                                self.inbox.put(("notify", None))
                            elif note.payload.isdigit():
                                self.inbox.put(("batch_stopped", int(note.payload)))
            except psycopg.Error as exc:
                logger.warning(
                    "listen connection lost; polling until it is back",
                    extra={
                        "action": "worker.listen_error",
                        "worker_id": self.worker_id,
                        "error": (str(exc).strip().splitlines() or [""])[0],
                    },
                )
                self.stopped.wait(backoff)
                backoff = min(backoff * 2, settings.WORKER_DB_BACKOFF_MAX_SECONDS)


class Background(threading.Thread):
    """The worker's slow database work, away from its main thread.

    The main thread renews the leases of the calls in flight; anything that
    can take long there (a recovery pass that asks a provider about each lost
    call, the suspension sweep of an account that ran out of credits) would
    delay the renewal and let the leases expire under live calls. Tasks run
    one at a time on this thread's own connection; a task already queued or
    running under the same key is not queued again.
    """

    def __init__(self, worker_id: str) -> None:
        super().__init__(name="background", daemon=True)
        self.worker_id = worker_id
        self.tasks: queue.Queue[tuple[str, Callable[[], object]] | None] = queue.Queue()
        self.keys: set[str] = set()
        self.lock = threading.Lock()

    def submit(self, key: str, task: Callable[[], object]) -> bool:
        with self.lock:
            if key in self.keys:
                return False
            self.keys.add(key)
        if not self.is_alive():
            with contextlib.suppress(RuntimeError):  # started already
                self.start()
        self.tasks.put((key, task))
        return True

    def busy(self, key: str | None = None) -> bool:
        with self.lock:
            return key in self.keys if key is not None else bool(self.keys)

    def stop(self, timeout: float) -> None:
        self.tasks.put(None)
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        try:
            while (item := self.tasks.get()) is not None:
                key, task = item
                try:
                    close_old_connections()
                    task()
                except Exception as exc:
                    logger.exception(
                        "background task failed",
                        extra={
                            "action": "worker.background_error",
                            "worker_id": self.worker_id,
                            "task": key,
                            "error": str(exc)[:200],
                        },
                    )
                    if isinstance(exc, DB_ERRORS):
                        for conn in connections.all():
                            with contextlib.suppress(Exception):
                                conn.close()
                finally:
                    with self.lock:
                        self.keys.discard(key)
        finally:
            connections.close_all()


class CallWorker:
    def __init__(
        self,
        *,
        dialer: Dialer,
        worker_id: str | None = None,
        concurrency: int = 1,
        burst: bool = False,
        once: bool = False,
        max_jobs: int | None = None,
        shutdown_timeout: float = 30.0,
        lease_seconds: int | None = None,
        poll_seconds: float | None = None,
        listen: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dialer = dialer
        self.worker_id = worker_id or default_worker_id()
        # This process's claims, told apart from those of any other process
        # started with the same worker id (see Job.claim_token).
        self.token = secrets.token_hex(16)
        self.concurrency = max(1, concurrency)
        self.burst = burst
        self.once = once
        self.max_jobs = max_jobs
        self.shutdown_timeout = shutdown_timeout
        self.lease_seconds = int(lease_seconds or settings.JOB_LEASE_SECONDS)
        self.poll_seconds = poll_seconds or settings.WORKER_POLL_SECONDS
        self.renew_every = settings.WORKER_RENEW_SECONDS or min(
            self.lease_seconds / 4, 5.0
        )
        self.recover_every = max(self.lease_seconds / 4, 1.0)
        self.promote_every = 1.0
        self.fold_every = settings.JOB_COUNTS_FOLD_SECONDS
        self.listen = listen
        self.clock = clock  # how long calls have run (tests inject one)

        self.calls: dict[int, Call] = {}
        # A paced dialer's claimed jobs wait here for their send slots
        # (jobs/pacing.py), and are marked dialled one by one, each at its
        # slot; ``slot`` is the one taken (its local deadline) and not used.
        self.limits = dialer.pacing
        self.waiting: collections.deque[Job] = collections.deque()
        self.slot: tuple[float, pacing.Slot] | None = None
        # An asynchronous dialer's requests (place, hang up) run on a small
        # pool: a call in flight holds no thread (docs/telephony.md).
        self.placer: concurrent.futures.ThreadPoolExecutor | None = None
        self.place_threads = settings.WORKER_PLACE_THREADS
        if dialer.asynchronous:
            self.placer = concurrent.futures.ThreadPoolExecutor(
                max_workers=self.place_threads,
                thread_name_prefix="place",
            )
        self.background = Background(self.worker_id)
        self.inbox: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.listener: Listener | None = None
        self.started = 0
        self.stopping = False
        self.stop_deadline: float | None = None
        self.claiming_done = False
        self.db_failures = 0
        self.needs_reconcile = False
        # Database time at start: a claim under this worker id made since
        # then by another process means two live processes share the id.
        self.epoch: datetime | None = None
        # Other processes' claim tokens seen under this id: their latest
        # lease expiry, and whether the error has been logged.
        self.other_leases: dict[str, datetime] = {}
        self.reported_tokens: set[str] = set()
        # Batches cancelled or deleted (LISTEN) whose calls are to be hung up.
        self.stopped_batches: set[int] = set()
        self.wake = True
        self.idle = False
        self.last_claim_empty = False
        now = time.monotonic()
        self.next_renew = now + self.renew_every
        self.next_recover = now
        self.next_promote = now
        self.next_fold = now
        self.next_poll = now

    # --- control ---------------------------------------------------------
    def stop(self, *_args: Any) -> None:
        """Stop claiming; let calls finish up to the shutdown timeout.

        A second call (a second Ctrl-C) hangs the calls up at once. Safe to
        call from a signal handler: it only sets attributes.
        """
        if self.stopping:
            self.stop_deadline = time.monotonic()
            return
        self.stopping = True
        self.stop_deadline = time.monotonic() + self.shutdown_timeout

    def _log(self, level: int, message: str, *args: Any, **fields: Any) -> None:
        fields.setdefault("worker_id", self.worker_id)
        logger.log(level, message, *args, extra=fields)

    # --- units of work ----------------------------------------------------
    def drain_inbox(self, timeout: float = 0.0) -> bool:
        try:
            item = (
                self.inbox.get(timeout=timeout) if timeout else self.inbox.get_nowait()
            )
        except queue.Empty:
            return False
        while True:
            kind, payload = item
            if kind == "notify":
                self.wake = True
            elif kind == "batch_stopped":
                self.stopped_batches.add(payload)
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                return True

    def save_call_ids(self) -> bool:
        found = False
        for call in list(self.calls.values()):
            if call.call_id and not call.call_id_saved and not call.result:
                lifecycle.record_call_id(
                    job_id=call.job.pk,
                    worker_id=self.worker_id,
                    token=self.token,
                    call_id=call.call_id,
                    attempt_token=call.job.attempt_token,
                )
                call.call_id_saved = True
                found = True
        return found

    def finish_calls(self) -> bool:
        """Record every call that has ended, then settle them: one statement
        each for all of them in the common case."""
        # Read each result once: a call thread may set it meanwhile.
        ended = [
            (call, result)
            for call in self.calls.values()
            if (result := call.result) is not None
        ]
        if not ended:
            return False
        for call, result in ended:
            if call.hangup_reason == OUT_OF_CREDITS and not result.error:
                result.error = OUT_OF_CREDITS  # kept in the attempt log
        lifecycle.record_calls(
            worker_id=self.worker_id,
            token=self.token,
            ended=[
                lifecycle.CallEnd(
                    job_id=call.job.pk,
                    dialed_at=call.dialed_at,
                    call_id=call.call_id,
                    result=result,
                    attempt_token=call.job.attempt_token,
                    interrupted=(
                        lifecycle.WORKER_STOPPED
                        if call.hangup_reason == lifecycle.WORKER_STOPPED
                        else ""
                    ),
                )
                for call, result in ended
                if not call.recorded
            ],
        )
        for call, _ in ended:
            call.recorded = True
        for call, result in ended:
            if result.opt_out and not call.opted_out:
                # The number goes on the account's DNC list at once, and its
                # other open jobs are cancelled. Idempotent, so a round that
                # fails here does it again.
                dnc.job_opt_out(
                    job=call.job, actor=Actor.worker(self.worker_id), during_call=True
                )
                call.opted_out = True
        billing.settle_calls(
            [
                (call.job, result.duration_seconds, result.outcome)
                for call, result in ended
            ]
        )
        for call, _ in ended:
            del self.calls[call.job.pk]
        self.wake = True  # slots are free
        return True

    def renew(self) -> bool:
        if time.monotonic() < self.next_renew:
            return False
        held = [job_id for job_id, call in self.calls.items() if not call.recorded]
        held += [job.pk for job in self.waiting]
        lost = lifecycle.renew_leases(
            worker_id=self.worker_id,
            token=self.token,
            job_ids=held,
            lease_seconds=self.lease_seconds,
        )
        self.next_renew = time.monotonic() + self.renew_every
        if self.waiting and lost:
            # Cancelled or recovered while waiting for a slot: never dialled.
            self.waiting = collections.deque(
                job for job in self.waiting if job.pk not in lost
            )
            lost = {job_id for job_id in lost if job_id in self.calls}
        lost = self._ended_by_callback(lost)
        # A batch cancel or delete hangs up only the calls not answered yet,
        # whether its notification woke this worker or not.
        stopped = telephony.stopped_batches(
            self.calls[job_id].job.batch_id for job_id in lost
        )
        for job_id in lost:
            call = self.calls[job_id]
            batch_reason = stopped.get(call.job.batch_id or 0)  # 0: no batch
            self._log(
                logging.INFO,
                "job no longer held: hanging up",
                action="job.hangup",
                job_id=job_id,
                batch_id=call.job.batch_id,
                reason=batch_reason or HANGUP_NOT_HELD,
            )
            if batch_reason:
                self.hang_up(call, batch_reason, unanswered_only=True)
            else:
                self.hang_up(call, HANGUP_NOT_HELD)
            if call.handle is not None and self.dialer.asynchronous:
                # Its final callback ends the attempt; nothing waits for it.
                del self.calls[job_id]
                self.wake = True
        return bool(lost)

    def hang_up_stopped(self) -> bool:
        """Hang up the calls of batches just cancelled or deleted that are
        not answered yet, as soon as their notification arrives (not at the
        next lease renewal); answered calls are left to finish. Returns
        whether any call was concerned."""
        if not self.stopped_batches:
            return False
        pks, self.stopped_batches = self.stopped_batches, set()
        mine = [
            call
            for call in self.calls.values()
            if call.job.batch_id in pks
            and call.result is None
            and not call.hangup_reason
        ]
        if not mine:
            return False
        # The notification is a hint: the batch row says.
        stopped = telephony.stopped_batches(call.job.batch_id for call in mine)
        found = False
        for call in mine:
            reason = stopped.get(call.job.batch_id or 0)
            if reason is None:
                continue
            self._log(
                logging.INFO,
                "batch stopped: hanging up the call unless answered",
                action="job.hangup_unanswered",
                job_id=call.job.pk,
                batch_id=call.job.batch_id,
                reason=reason,
            )
            self.hang_up(call, reason, unanswered_only=True)
            found = True
        return found

    def _ended_by_callback(self, lost: set[int]) -> set[int]:
        """Drop the asynchronous calls among ``lost`` that ended by their
        provider's callback (the job moved on through jobs/telephony.py);
        return the rest, which are to be hung up."""
        if not self.dialer.asynchronous:
            return lost
        tokens = {
            self.calls[job_id].job.attempt_token: job_id
            for job_id in lost
            if self.calls[job_id].handle is not None
        }
        if not tokens:
            return lost
        for token in telephony.attempts_ended(list(tokens)):
            del self.calls[tokens[token]]
            lost.discard(tokens[token])
            self.wake = True  # slots are free
        return lost

    def extend_reservations(self) -> bool:
        """Reserve the next minute of every call about to run past the
        minutes its account has paid for.

        The attempt is made up to two renewal periods before the minute
        begins (the main loop comes round at least once per period while
        calls run). When the account cannot pay for it, CALL_OUT_OF_CREDITS
        decides: ``hangup`` ends the call then, inside the minutes already
        paid for; ``continue`` lets it run, and the settlement charges what
        is left. Returns whether any call was extended or hung up.
        """
        if settings.CALL_COST_PER_STARTED_MINUTE <= 0:
            return False
        lead = 2 * self.renew_every
        now = self.clock()
        changed = False
        for call in list(self.calls.values()):
            if call.result is not None or call.hangup_reason or call.unfunded:
                continue
            if now - call.started < call.reserved_minutes * 60 - lead:
                continue
            minute = call.reserved_minutes + 1
            if billing.extend_call(call.job, minute=minute):
                call.reserved_minutes = minute
                changed = True
                continue
            hang = settings.CALL_OUT_OF_CREDITS == "hangup"
            self._log(
                logging.WARNING,
                "account cannot pay for the call's next minute: %s",
                "hanging up" if hang else "letting it run",
                action="credits.extend_failed",
                job_id=call.job.pk,
                account_id=call.job.account_id,
                minute=minute,
                policy=settings.CALL_OUT_OF_CREDITS,
            )
            if hang:
                self.hang_up(call, OUT_OF_CREDITS)
                changed = True
            else:
                call.unfunded = True
        return changed

    def recover(self) -> bool:
        """Start a recovery pass of expired leases in the background: it asks
        the dialer about each lost call, which may be slow. Returns whether a
        pass was started."""
        if time.monotonic() < self.next_recover:
            return False
        self.check_worker_id()
        self.next_recover = time.monotonic() + self.recover_every
        return self.background.submit("recover", self._recover_pass)

    def _recover_pass(self) -> None:
        recovered = lifecycle.recover_expired_leases(
            recoverer=self.worker_id, dialer=self.dialer, own_token=self.token
        )
        if recovered:
            self.inbox.put(("notify", None))  # jobs may be pending again

    def fold_counts(self) -> None:
        """Fold the per-batch job counts' appended changes, in the background
        (see jobs/counts.py), every ``JOB_COUNTS_FOLD_SECONDS``."""
        if not self.fold_every or time.monotonic() < self.next_fold:
            return
        self.next_fold = time.monotonic() + self.fold_every
        self.background.submit("fold-counts", fold_job_counts)

    def suspend_account(self, account_id: int) -> None:
        """An account could not pay for a call: sweep its campaigns into
        suspension in the background (see billing.reserve_call)."""
        self.background.submit(
            f"suspend:{account_id}",
            lambda: billing.suspend_account(account_id),
        )

    def check_worker_id(self) -> None:
        """Log an error when another live process uses this worker id.

        Its jobs carry another claim token, so neither process can release or
        complete the other's; but logs, the dashboard and the attempt logs can
        no longer tell them apart. A process counts as live once it claimed
        under the id after this one started, or renewed a lease since the last
        look: the leftovers of a killed earlier process do neither.
        """
        if self.epoch is None:
            return
        holders = lifecycle.other_processes_holding(
            worker_id=self.worker_id, token=self.token
        )
        for token, (claimed_at, lease) in holders.items():
            seen = self.other_leases.get(token)
            self.other_leases[token] = lease
            live = claimed_at >= self.epoch or (seen is not None and lease > seen)
            if live and token not in self.reported_tokens:
                self.reported_tokens.add(token)
                self._log(
                    logging.ERROR,
                    "worker id %s is in use by another live process; give each "
                    "worker process its own --worker-id",
                    self.worker_id,
                    action="worker.id_in_use",
                )

    def promote(self) -> bool:
        if time.monotonic() < self.next_promote:
            return False
        promoted = promote_due_jobs()
        self.next_promote = time.monotonic() + self.promote_every
        if promoted:
            self._log(
                logging.INFO,
                "scheduled jobs due: now pending",
                action="job.promoted",
                count=promoted,
            )
            self.wake = True
        return bool(promoted)

    def capacity(self) -> int:
        free = self.concurrency - len(self.calls) - len(self.waiting)
        if self.max_jobs is not None:
            free = min(free, self.max_jobs - self.started - len(self.waiting))
        return max(free, 0)

    def paced_limit(self, free: int) -> int:
        """How many jobs this worker claims now, of ``free``: with a paced
        dialer, about a second's worth of slots; and no more than the
        provider account has room for (a hint read without a lock; the dial
        mark is the rule, jobs/pacing.py)."""
        limits = self.limits
        if limits is None:
            return free
        if limits.paced:
            free = min(free, max(1, math.ceil(limits.calls_per_second)))
        room = pacing.room_hint(limits)
        return free if room is None else min(free, room)

    def claim(self) -> bool:
        """Claim as many jobs as there are free call slots, and dial them."""
        if self.stopping or self.claiming_done:
            return False
        free = self.capacity()
        if free <= 0:
            return False
        if self.waiting:
            return False  # a paced dialer's jobs wait for their slots first
        now = time.monotonic()
        if not self.wake and now < self.next_poll:
            return False
        self.wake = False
        self.next_poll = now + self.poll_seconds
        if self.limits is not None:
            free = self.paced_limit(free)
            if free <= 0:
                # Jobs wait for slots, or the provider account is full: look
                # again at the next poll, or when a call of this worker ends.
                return False
        jobs = claim_jobs(
            worker_id=self.worker_id,
            token=self.token,
            limit=free,
            lease_seconds=self.lease_seconds,
        )
        if self.once:
            self.claiming_done = True
        self.last_claim_empty = not jobs
        if not jobs:
            # Paused, cancelled and completed batches are never walked, so
            # "nothing" means no pending job in an active batch or without one.
            self._log(
                logging.DEBUG if self.idle else logging.INFO,
                "nothing claimable",
                action="claim.empty",
                wanted=free,
            )
            self.idle = True
            return False
        self.idle = False
        if len(jobs) == free:
            self.wake = True  # there may be more
        self._log(
            logging.INFO,
            "claimed %s job(s)",
            len(jobs),
            action="claim.claimed",
            wanted=free,
            job_ids=[job.pk for job in jobs],
        )
        for job in jobs:
            self._log(
                logging.INFO,
                "job claimed",
                action="job.claimed",
                job_id=job.pk,
                batch_id=job.batch_id,
                priority=job.priority,
                attempt=job.attempts + 1,
            )
        if self.limits is not None and self.limits.paced:
            self.waiting.extend(jobs)  # dialled at their slots: pace()
            return True
        self.dial(jobs)
        return True

    def pace(self) -> bool:
        """Dial the jobs waiting for a send slot, each at its own slot.

        A slot is taken from the database (jobs/pacing.py) and waited for in
        the main loop (its deadline bounds the loop's sleep); at the slot the
        job goes through the dial mark, the last commit before the provider
        request, which re-checks what may have changed meanwhile. A slot
        reached more than half the guard late is dropped for a fresh one.
        """
        limits = self.limits
        if limits is None or not self.waiting or self.stopping:
            return False
        found = False
        while self.waiting:
            if self.slot is None:
                slot = pacing.take_slot(limits)
                self.slot = (time.monotonic() + slot.wait, slot)
            deadline, slot = self.slot
            now = time.monotonic()
            if now < deadline:
                break
            self.slot = None
            if now > deadline + limits.late:
                self._log(
                    logging.INFO,
                    "send slot missed: taking another",
                    action="pacing.slot_missed",
                    late_seconds=round(now - deadline, 3),
                )
                continue
            self.dial([self.waiting.popleft()], slot=slot)
            found = True
        return found

    def dial(self, jobs: list[Job], slot: pacing.Slot | None = None) -> None:
        """Reserve credits for claimed jobs, mark them dialled through the
        dial gate, and hand those it lets through to the dialer. The gate's
        commit is the last one before a provider request: a job whose batch
        was paused since the claim is released there, not dialled; with a
        paced dialer this commit comes at the job's send ``slot``."""
        payable = billing.reserve_calls(
            jobs,
            worker_id=self.worker_id,
            token=self.token,
            sweep=self.suspend_account,
        )
        # The dial gate: the mark and every rule in one transaction.
        for job in lifecycle.mark_dialed(
            jobs=payable,
            worker_id=self.worker_id,
            token=self.token,
            dialer=self.dialer.name,
            pace=self.limits,
            slot=slot,
        ):
            assert job.dialed_at is not None  # set by mark_dialed
            call = Call(
                job=job,
                dialed_at=job.dialed_at,
                started=self.clock(),
                reserved_minutes=settings.CALL_RESERVE_MINUTES,
            )
            self.calls[job.pk] = call
            self.started += 1
            self._log(
                logging.INFO,
                "dialling",
                action="job.dialling",
                job_id=job.pk,
                batch_id=job.batch_id,
                attempt=job.attempts,
            )
            if self.placer is not None:
                self.placer.submit(self._place_async, call)
                continue
            # Daemon threads: a call stuck in a provider must not keep a
            # stopped worker alive; its lease then expires and policy applies.
            threading.Thread(
                target=self._call_thread,
                args=(call,),
                name=f"call-{job.pk}",
                daemon=True,
            ).start()

    def reconcile(self) -> bool:
        if not self.needs_reconcile:
            return False
        released = lifecycle.release_orphans(
            worker_id=self.worker_id, token=self.token, keep_ids=list(self.calls)
        )
        self.waiting.clear()  # released with the rest: pending again
        self.needs_reconcile = False
        return bool(released)

    def tick(self) -> bool:
        """One round of every unit; True if any found work."""
        close_old_connections()
        if self.epoch is None:
            self.epoch = database_now()
        found = self.reconcile()
        found |= self.hang_up_stopped()
        found |= self.save_call_ids()
        found |= self.finish_calls()
        found |= self.renew()
        found |= self.extend_reservations()
        found |= self.recover()
        self.fold_counts()
        found |= self.promote()
        found |= self.claim()
        found |= self.pace()
        metrics.CALLS_IN_FLIGHT.set(len(self.calls))
        return found

    # --- calls (call threads) ----------------------------------------------
    def _wait_to_send(self) -> None:
        """A paced dialer's second stage, in the thread about to send: wait
        for the send permit (jobs/pacing.py), so a request that came late
        pushes the next one back. If the database cannot be asked, the
        request goes: its slot paced it already."""
        limits = self.limits
        if limits is None or not limits.paced:
            return
        try:
            wait = pacing.send_permit(limits).wait
        except DB_ERRORS as exc:
            logger.warning(
                "send permit unavailable: sending at the slot",
                extra={"action": "pacing.permit_error", "error": str(exc)[:200]},
            )
            # This thread's connection: a fresh one for the next permit.
            with contextlib.suppress(Exception):
                connections["default"].close()
            return
        if wait > 0:
            time.sleep(wait)

    def _close_placer_connections(self) -> None:
        """Close the database connections the request threads opened (send
        permits, lookups): one task per thread, held at a barrier until
        every thread has one, so each thread runs exactly one."""
        assert self.placer is not None
        threads = self.place_threads
        barrier = threading.Barrier(threads, timeout=HANGUP_GRACE_SECONDS)

        def close() -> None:
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait()
            connections.close_all()

        for _ in range(threads):
            self.placer.submit(close)

    def _place(self, call: Call) -> CallHandle | None:
        try:
            self._wait_to_send()
            return self.dialer.place_call(call.job)
        except Exception as exc:
            logger.exception(
                "dialer could not place the call",
                extra={"action": "job.dial_error", "job_id": call.job.pk},
            )
            if isinstance(exc, CallRefused):
                # The number itself was refused: fail the job, say why.
                call.result = CallResult(outcome=Outcome.FAILED, error=str(exc))
            else:
                # Only the dialer's word that nothing was placed makes a
                # retry safe: a timeout may have come after the provider
                # placed it.
                call.result = CallResult(
                    outcome=Outcome.ERROR,
                    error=f"dial error: {exc}",
                    never_connected=isinstance(exc, CallNotPlaced),
                )
            self.inbox.put(("ended", call))
            return None

    def _place_async(self, call: Call) -> None:
        """Place the call and return: its provider's callbacks end it."""
        handle = self._place(call)
        if handle is None:
            return
        with call.lock:
            call.handle = handle
            call.call_id = handle.call_id
            hang = call.hangup_reason
        self.inbox.put(("placed", call))
        if hang:
            self._hangup_handle(handle, call, hang)

    def _call_thread(self, call: Call) -> None:
        handle = self._place(call)
        if handle is None:
            return
        with call.lock:
            call.handle = handle
            call.call_id = handle.call_id
            hang = call.hangup_reason
        self.inbox.put(("placed", call))
        if hang:
            self._hangup_handle(handle, call, hang)
        try:
            result = self.dialer.wait(handle, settings.WORKER_MAX_CALL_SECONDS)
        except Exception as exc:
            logger.exception("call failed", extra={"action": "job.call_error"})
            result = CallResult(outcome=Outcome.ERROR, error=str(exc))
        if result.outcome == Outcome.ERROR and not result.never_connected:
            result.never_connected = self._never_connected(handle.call_id)
        call.result = result
        self.inbox.put(("ended", call))

    def _never_connected(self, call_id: str) -> bool:
        """Ask the provider about a call that ended in an error after it was
        placed; in this call thread, so a slow answer delays nothing else."""
        if not call_id:
            return False
        try:
            return self.dialer.call_status(call_id) == CallStatus.NEVER_CONNECTED
        except Exception:
            logger.exception(
                "dialer could not report a call's status",
                extra={"action": "job.call_status_error", "call_id": call_id},
            )
            return False

    def _hangup_handle(
        self, handle: CallHandle, call: Call | None = None, reason: str = ""
    ) -> None:
        try:
            if call is not None and call.unanswered_only:
                self._hangup_unanswered(handle, call, reason)
                return
            if call is not None and call.job.attempt_token:
                telephony.attempt_hangup_requested(
                    token=call.job.attempt_token, reason=reason
                )
            self.dialer.hangup(handle)
        except Exception:
            logger.exception("hang-up failed", extra={"action": "job.hangup_error"})

    def _hangup_unanswered(self, handle: CallHandle, call: Call, reason: str) -> None:
        """A batch cancel or delete: hang up unless answered; record which
        on the attempt."""
        token = call.job.attempt_token
        answered = bool(token) and telephony.attempt_answered(token)
        done = self.dialer.cancel_unanswered(handle, answered=answered)
        self._log(
            logging.INFO,
            "call of a stopped batch: %s",
            done,
            action="job.hangup_unanswered_done",
            job_id=call.job.pk,
            batch_id=call.job.batch_id,
            result=done,
        )
        if not token:
            return
        if done == Unanswered.HUNG_UP:
            telephony.attempt_hangup_requested(
                token=token, reason=f"{reason}; {telephony.NOT_ANSWERED}"
            )
        elif done == Unanswered.ANSWERED:
            telephony.attempt_left_to_finish(
                token=token, reason=f"{reason}; {telephony.ANSWERED}"
            )

    def hang_up(
        self, call: Call, reason: str, *, unanswered_only: bool = False
    ) -> None:
        with call.lock:
            if call.hangup_reason:
                return
            call.hangup_reason = reason
            call.unanswered_only = unanswered_only
            handle = call.handle
        if handle is None:
            return
        if self.placer is not None:
            # A provider request: off the main thread, which renews leases.
            self.placer.submit(self._hangup_handle, handle, call, reason)
        else:
            self._hangup_handle(handle, call, reason)

    # --- the loop --------------------------------------------------------
    def sleep(self, seconds: float) -> None:
        """Sleep in short slices; return early on a stop or an inbox message."""
        deadline = time.monotonic() + seconds
        stopping = self.stopping
        while self.stopping == stopping:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if self.drain_inbox(timeout=min(SLICE, remaining)):
                return

    def idle_timeout(self) -> float:
        nearest = min(self.next_promote, self.next_recover, self.next_poll)
        if self.calls or self.waiting:
            nearest = min(nearest, self.next_renew)
        if self.slot is not None and self.waiting:
            nearest = min(nearest, self.slot[0])
        return max(0.0, min(self.poll_seconds, nearest - time.monotonic()))

    def on_db_error(self, exc: Exception) -> None:
        self.db_failures += 1
        metrics.DATABASE_ERRORS.labels(process="worker").inc()
        delay = min(
            0.25 * 2 ** (self.db_failures - 1), settings.WORKER_DB_BACKOFF_MAX_SECONDS
        )
        self._log(
            logging.WARNING,
            "database unavailable; backing off",
            action="worker.db_error",
            error=(str(exc).strip().splitlines() or [repr(exc)])[0],
            failures=self.db_failures,
            retry_in=delay,
            calls_in_flight=len(self.calls),
        )
        for conn in connections.all():
            with contextlib.suppress(Exception):
                conn.close()
        # A claim or dial mark may or may not have committed.
        self.needs_reconcile = True
        # Renew before anything else once back, so that a long outage does
        # not let this worker's own recovery pass take its live calls.
        self.next_renew = 0.0
        self.wake = True
        self.sleep(delay)

    def finished(self) -> bool:
        if self.stopping:
            # Jobs still waiting for a slot are released at shutdown.
            return not self.calls
        if self.calls or self.waiting:
            return False
        if self.max_jobs is not None and self.started >= self.max_jobs:
            return True
        if self.claiming_done:
            return True
        # A recovery pass under way may yet make jobs pending.
        return (
            self.burst
            and self.last_claim_empty
            and not self.wake
            and not self.background.busy()
        )

    def run(self) -> None:
        self._log(
            logging.INFO,
            "worker started",
            action="worker.started",
            dialer=self.dialer.name,
            concurrency=self.concurrency,
            lease_seconds=self.lease_seconds,
            nice=lower_cpu_priority(0),
        )
        if self.listen and connections["default"].vendor == "postgresql":
            self.listener = Listener(self.inbox, self.worker_id)
            self.listener.start()
        hung_up_at: float | None = None
        stop_noted = False
        try:
            while not self.finished():
                now = time.monotonic()
                if self.stopping and not stop_noted:
                    # Logged here, not in stop(): a signal handler must not log.
                    stop_noted = True
                    self._log(
                        logging.INFO,
                        "stop requested: no new claims; calls in progress finish",
                        action="worker.stopping",
                        calls_in_flight=len(self.calls),
                    )
                if self.stopping and self.stop_deadline is not None:
                    if now >= self.stop_deadline and hung_up_at is None:
                        hung_up_at = now
                        self._hang_up_all()
                    if (
                        hung_up_at is not None
                        and now >= hung_up_at + HANGUP_GRACE_SECONDS
                    ):
                        self._log(
                            logging.WARNING,
                            "calls did not report after hang-up; leaving them to "
                            "lease expiry",
                            action="worker.abandon",
                            job_ids=list(self.calls),
                        )
                        break
                self.drain_inbox()
                try:
                    found = self.tick()
                except DB_ERRORS as exc:
                    self.on_db_error(exc)
                    continue
                if self.db_failures:
                    self._log(
                        logging.INFO,
                        "database reachable again",
                        action="worker.db_recovered",
                        failures=self.db_failures,
                    )
                    self.db_failures = 0
                if not found and not self.finished():
                    self.sleep(self.idle_timeout())
        finally:
            self.shutdown()

    def _hang_up_all(self) -> None:
        self._log(
            logging.WARNING,
            "shutdown timeout reached: hanging up calls in flight",
            action="worker.hangup_all",
            job_ids=list(self.calls),
        )
        for call in list(self.calls.values()):
            if call.result is None:
                self.hang_up(call, lifecycle.WORKER_STOPPED)

    def shutdown(self) -> None:
        if self.listener is not None:
            self.listener.stopped.set()
        # A task cut short is safe: each recovery and each suspension step is
        # its own transaction, and the next pass (any worker's) goes on.
        self.background.stop(timeout=HANGUP_GRACE_SECONDS)
        # It ran at least one round, or holds jobs waiting for a send slot
        # (released here: never dialled).
        if self.epoch is not None or self.waiting:
            with contextlib.suppress(*DB_ERRORS):
                lifecycle.release_orphans(
                    worker_id=self.worker_id,
                    token=self.token,
                    keep_ids=list(self.calls),
                )
        if self.placer is not None:
            self._close_placer_connections()
            self.placer.shutdown(wait=True, cancel_futures=False)
        self.dialer.close()
        metrics.CALLS_IN_FLIGHT.set(len(self.calls))
        self._log(
            logging.INFO,
            "worker stopped",
            action="worker.stopped",
            dialled=self.started,
            left_in_flight=len(self.calls),
        )
