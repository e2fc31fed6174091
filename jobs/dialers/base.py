"""The dialer interface: how the worker places calls, whatever the provider.

A dialer places a call and returns a ``CallHandle`` at once. The worker then
waits on the handle in a call thread. A provider that reports completion later
through a callback (a webhook) resolves the handle from that callback with
``handle.resolve(...)``; the embedded simulated dialer resolves it itself.

``call_status(call_id)`` lets a worker that recovers another worker's expired
lease ask whether a call ever connected, so that a call that certainly never
went out can be retried instead of being failed as "worker lost".
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobs.models import Job
    from jobs.pacing import Pacing


class Outcome:
    ANSWERED = "answered"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    VOICEMAIL = "voicemail"
    FAILED = "failed"
    ERROR = "error"

    ALL = frozenset({ANSWERED, BUSY, NO_ANSWER, VOICEMAIL, FAILED, ERROR})


class CallStatus:
    """What a dialer knows about a call it placed (for crash recovery)."""

    NEVER_CONNECTED = "never_connected"
    CONNECTED = "connected"
    # Still queued, ringing or in progress at the provider: leave it alone.
    RUNNING = "running"
    UNKNOWN = "unknown"


class Unanswered:
    """What ``Dialer.cancel_unanswered`` did with a call."""

    HUNG_UP = "hung_up"  # not answered yet: a hang-up was requested
    ANSWERED = "answered"  # answered: left to finish
    ENDED = "ended"  # over already: nothing to do


class CallNotPlaced(Exception):
    """Raised by ``place_call`` when the provider certainly placed no call:
    it refused the request (a 429, a validation error) or nothing was sent.

    Any other exception from ``place_call`` may have come after the provider
    placed the call (a timeout, a lost reply), so the worker never retries it.
    """


class CallRefused(CallNotPlaced):
    """The provider refused the number itself (invalid, unreachable): no
    call was placed, and none ever will be. The job fails with the reason
    and is not retried."""


@dataclass
class CallResult:
    """How a call ended.

    An ``error`` outcome is retried only when ``never_connected`` is set: the
    dialer (or the provider, asked through ``call_status``) knows the call
    never reached anyone. Any other error came after the dial and the call
    may have connected, so the job fails instead of being dialled again.
    """

    outcome: str
    duration_seconds: float = 0.0
    hung_up: bool = False
    error: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    never_connected: bool = False
    # The person asked not to be called again (a keypress, a phrase the
    # voice agent recognised): the number goes on the account's DNC list.
    opt_out: bool = False

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "outcome": self.outcome,
            "duration_seconds": round(self.duration_seconds, 3),
        }
        if self.hung_up:
            data["hung_up"] = True
        if self.error:
            data["error"] = self.error
        if self.never_connected:
            data["never_connected"] = True
        if self.opt_out:
            data["opt_out"] = True
        if self.details:
            data["details"] = self.details
        return data


class CallHandle:
    """One placed call. Resolved exactly once, by the dialer or a callback."""

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self._done = threading.Event()
        self._result: CallResult | None = None
        self._lock = threading.Lock()

    def resolve(self, result: CallResult) -> bool:
        """Record the call's result; later resolutions are ignored."""
        if result.outcome not in Outcome.ALL:
            raise ValueError(f"unknown call outcome {result.outcome!r}")
        with self._lock:
            if self._done.is_set():
                return False
            self._result = result
            self._done.set()
            return True

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def result(self, timeout: float | None = None) -> CallResult | None:
        """Wait up to ``timeout`` seconds; None if the call is still running."""
        if not self._done.wait(timeout):
            return None
        return self._result


class Dialer(ABC):
    name = ""
    # An asynchronous dialer's calls end by the provider's callback
    # (jobs/telephony.py), not in the worker: the worker places the call and
    # moves on, holding no thread for it (docs/telephony.md).
    asynchronous = False
    # Requests per second and calls at once that every worker process
    # shares (jobs/pacing.py); None: not paced.
    pacing: Pacing | None = None

    @abstractmethod
    def place_call(self, job: Job) -> CallHandle:
        """Start a call to ``job.phone_number``; return without waiting for it."""

    @abstractmethod
    def hangup(self, handle: CallHandle) -> None:
        """End the call early. The handle still resolves, with what happened."""

    def cancel_unanswered(self, handle: CallHandle, *, answered: bool) -> str:
        """Hang the call up if it is not answered yet (queued or ringing);
        leave an answered call to finish (a batch cancel or delete). Returns
        what was done (``Unanswered``).

        ``answered`` is what the product knows from the call's events; this
        default trusts it. A dialer that can ask its provider decides on the
        provider's word instead."""
        if answered:
            return Unanswered.ANSWERED
        self.hangup(handle)
        return Unanswered.HUNG_UP

    def call_status(self, call_id: str) -> str:
        """What the provider knows about a call; UNKNOWN unless it can tell."""
        return CallStatus.UNKNOWN

    def wait(self, handle: CallHandle, timeout: float) -> CallResult:
        """Block until the call ends, up to ``timeout`` seconds, then hang up."""
        result = handle.result(timeout)
        if result is None:
            self.hangup(handle)
            result = handle.result(30) or CallResult(
                outcome=Outcome.ERROR, error="call did not end after hang-up"
            )
        return result

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release provider resources when the worker stops."""


def monotonic() -> float:
    return time.monotonic()
