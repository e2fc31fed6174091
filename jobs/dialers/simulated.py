"""The embedded dialer: calls that last a while and end with a random outcome.

Configured by SIMULATED_CALL_SECONDS (``3`` or a range ``1-5``),
SIMULATED_OUTCOMES (``answered=0.7,busy=0.1,...``, weights), SIMULATED_SEED
(an integer: the same seed gives the same sequence of durations and outcomes)
and SIMULATED_HOLD_FILE (a path: no call ends before that file exists, so a
test can act while it knows calls are in progress, then release them) and
SIMULATED_DIAL_LOG (a path: the dialer appends one JSON line per call placed
and per call ended, with the wall clock, the number, the job and the
worker's pid; the call-safety simulation checks the calls from it).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import threading
import time
import uuid
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from jobs.dialers.base import (
    CallHandle,
    CallResult,
    CallStatus,
    Dialer,
    Outcome,
    monotonic,
)

if TYPE_CHECKING:
    from jobs.models import Job


def parse_call_seconds(
    raw: str, name: str = "SIMULATED_CALL_SECONDS"
) -> tuple[float, float]:
    text = raw.strip()
    try:
        if "-" in text:
            low_s, high_s = text.split("-", 1)
            low, high = float(low_s), float(high_s)
        else:
            low = high = float(text)
    except ValueError:
        raise ImproperlyConfigured(
            f"{name} must be a number of seconds or a range like 1-5, got {raw!r}"
        ) from None
    if low < 0 or high < low:
        raise ImproperlyConfigured(
            f"{name} must be >= 0 and a range must be low-high, got {raw!r}"
        )
    return low, high


def parse_outcomes(raw: str, name: str = "SIMULATED_OUTCOMES") -> dict[str, float]:
    weights: dict[str, float] = {}
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in Outcome.ALL:
            raise ImproperlyConfigured(
                f"{name} must look like answered=0.7,busy=0.1 with outcomes from "
                f"{sorted(Outcome.ALL)}, got {raw!r}"
            )
        try:
            weight = float(value)
        except ValueError:
            raise ImproperlyConfigured(
                f"{name}: weight of {key!r} must be a number, got {value!r}"
            ) from None
        if weight < 0:
            raise ImproperlyConfigured(f"{name}: weight of {key!r} must be >= 0")
        weights[key] = weight
    if not weights or sum(weights.values()) <= 0:
        raise ImproperlyConfigured(f"{name} needs at least one positive weight")
    return weights


def parse_seed(raw: str | None, name: str = "SIMULATED_SEED") -> int | None:
    if raw is None or not raw.strip():
        return None
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None


HOLD_POLL_SECONDS = 0.01


class SimulatedDialer(Dialer):
    name = "simulated"

    def __init__(
        self,
        *,
        call_seconds: tuple[float, float] = (3.0, 3.0),
        outcomes: dict[str, float] | None = None,
        seed: int | None = None,
        hold_file: str = "",
        opt_out_numbers: frozenset[str] = frozenset(),
        callbacks: bool = False,
        dial_log: str = "",
    ) -> None:
        self._dial_log = (
            os.open(dial_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            if dial_log
            else None
        )
        # Numbers whose answered calls report an opt-out.
        self.opt_out_numbers = opt_out_numbers
        self._opt_outs: set[str] = set()
        # "callback" completion: calls end through jobs/telephony.py, the
        # path of a provider's status callback, not in the worker.
        self.asynchronous = callbacks
        self.tokens: dict[str, str] = {}
        self.call_seconds = call_seconds
        self.hold_file = hold_file
        self.outcomes = outcomes or {Outcome.ANSWERED: 1.0}
        self._random = random.Random(seed)
        self._seeded = seed is not None
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self._calls: dict[str, tuple[threading.Timer, float, str, CallHandle]] = {}
        self.placed = 0

    @classmethod
    def from_settings(cls) -> SimulatedDialer:
        return cls(
            call_seconds=parse_call_seconds(settings.SIMULATED_CALL_SECONDS),
            outcomes=parse_outcomes(settings.SIMULATED_OUTCOMES),
            seed=parse_seed(settings.SIMULATED_SEED),
            hold_file=settings.SIMULATED_HOLD_FILE,
            opt_out_numbers=frozenset(settings.SIMULATED_OPT_OUT_NUMBERS),
            callbacks=settings.SIMULATED_COMPLETION == "callback",
            dial_log=settings.SIMULATED_DIAL_LOG,
        )

    def _log(self, event: str, call_id: str, **fields: object) -> None:
        """One line, one write on an O_APPEND descriptor: whole lines even
        with several worker processes on one file, and nothing buffered
        that a kill -9 could lose."""
        if self._dial_log is None:
            return
        line = {"event": event, "at": time.time(), "call": call_id, "pid": os.getpid()}
        os.write(self._dial_log, (json.dumps({**line, **fields}) + "\n").encode())

    def draw(self) -> tuple[float, str]:
        """The next (duration, outcome); deterministic in call order when seeded."""
        low, high = self.call_seconds
        with self._lock:
            duration = low if high == low else self._random.uniform(low, high)
            names = list(self.outcomes)
            outcome = self._random.choices(
                names, weights=[self.outcomes[n] for n in names]
            )[0]
        # Calls that never connect end sooner than conversations.
        if outcome in (Outcome.BUSY, Outcome.FAILED, Outcome.ERROR):
            duration = min(duration, 1.0)
        return duration, outcome

    def place_call(self, job: Job) -> CallHandle:
        duration, outcome = self.draw()
        number = next(self._counter)
        call_id = f"sim-{number}-{uuid.uuid4().hex[:12]}"
        handle = CallHandle(call_id)
        started = monotonic()
        end = self._finish_when_released if self.hold_file else self._finish
        timer = threading.Timer(duration, end, args=(call_id,))
        timer.daemon = True
        phone = job.phone_number if job is not None else ""
        self._log("dial", call_id, number=phone, job=getattr(job, "pk", None))
        with self._lock:
            if phone in self.opt_out_numbers and outcome == Outcome.ANSWERED:
                self._opt_outs.add(call_id)
            self._calls[call_id] = (timer, started, outcome, handle)
            self.tokens[call_id] = getattr(job, "attempt_token", "")
            self.placed += 1
        timer.start()
        return handle

    def _result(self, outcome: str, started: float, *, hung_up: bool) -> CallResult:
        error = "simulated dialer error" if outcome == Outcome.ERROR else ""
        return CallResult(
            outcome=outcome,
            duration_seconds=monotonic() - started,
            hung_up=hung_up,
            error=error,
            # A simulated error is the provider refusing the call: nobody
            # was reached, so it may be retried.
            never_connected=outcome == Outcome.ERROR,
        )

    def _finish(self, call_id: str) -> None:
        with self._lock:
            entry = self._calls.pop(call_id, None)
        if entry:
            _timer, started, outcome, handle = entry
            self._log("end", call_id, outcome=outcome)
            result = self._result(outcome, started, hung_up=False)
            with self._lock:
                result.opt_out = call_id in self._opt_outs
                self._opt_outs.discard(call_id)
            self._end(handle, result)

    def _end(self, handle: CallHandle, result: CallResult) -> None:
        if not self.asynchronous:
            handle.resolve(result)
            return
        from django.db import connections

        from jobs.telephony import ProviderEvent, apply_event

        with self._lock:
            token = self.tokens.pop(handle.call_id, "")
        try:
            apply_event(
                token=token,
                event=ProviderEvent(
                    status="completed",
                    call_id=handle.call_id,
                    raw={"outcome": result.outcome, "simulated": True},
                    result=result,
                ),
            )
        finally:
            connections.close_all()  # this timer thread's own connection

    def _finish_when_released(self, call_id: str) -> None:
        while not os.path.exists(self.hold_file):
            with self._lock:
                if call_id not in self._calls:
                    return  # hung up meanwhile
            time.sleep(HOLD_POLL_SECONDS)
        self._finish(call_id)

    def hangup(self, handle: CallHandle) -> None:
        with self._lock:
            entry = self._calls.pop(handle.call_id, None)
        if entry:
            timer, started, outcome, _handle = entry
            timer.cancel()
            self._log("end", handle.call_id, outcome="hung_up")
            self._end(handle, self._result(outcome, started, hung_up=True))

    def call_status(self, call_id: str) -> str:
        # Calls live in the process that placed them; after that process died
        # nothing is known, so recovery must assume the call may have connected.
        return CallStatus.UNKNOWN

    def close(self) -> None:
        with self._lock:
            entries = list(self._calls.values())
        for _timer, _started, _outcome, handle in entries:
            self.hangup(handle)
