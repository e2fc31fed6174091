"""Dialer backends, looked up by name (``--dialer`` / ``CALL_DIALER``)."""

from __future__ import annotations

from collections.abc import Callable

from django.core.exceptions import ImproperlyConfigured

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

_REGISTRY: dict[str, Callable[[], Dialer]] = {}


def register(name: str, factory: Callable[[], Dialer]) -> None:
    _REGISTRY[name] = factory


def get_dialer(name: str) -> Dialer:
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise ImproperlyConfigured(f"Unknown dialer {name!r}; known dialers: {known}")
    return _REGISTRY[name]()


def _simulated() -> Dialer:
    from jobs.dialers.simulated import SimulatedDialer

    return SimulatedDialer.from_settings()


def _twilio() -> Dialer:
    from jobs.dialers.twilio import TwilioDialer

    return TwilioDialer.from_settings()


def _http() -> Dialer:
    from jobs.dialers.http import HttpDialer

    return HttpDialer.from_settings()


register("simulated", _simulated)
register("twilio", _twilio)
register("http", _http)

__all__ = [
    "CallHandle",
    "CallNotPlaced",
    "CallRefused",
    "CallResult",
    "CallStatus",
    "Dialer",
    "Outcome",
    "Unanswered",
    "get_dialer",
    "register",
]
