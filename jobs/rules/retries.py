"""Retries by outcome: each batch's ``retry_policy`` (pure functions).

For each of ``busy``, ``no_answer``, ``voicemail``, ``failed`` and ``error``:
whether the call is tried again and after how long. The defaults:

* busy: retried after 10 minutes;
* no_answer: retried after 30 minutes;
* voicemail: not retried (the job is completed: a message was left);
* failed: not retried;
* error: retried after 5 minutes, and only if the call certainly never
  connected (the dialer says so); an error after the call may have
  connected is never retried, whatever the policy says (the crash policy,
  docs/architecture.md).

A batch stores only the outcomes it changes; ``effective_policy`` fills in
the rest. A retry waits for its delay or for the next opening of the
calling window, whichever is later (``jobs.lifecycle``), and is bounded by
the job's ``max_attempts`` like every attempt.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jobs.rules.windows import WindowError

OUTCOMES = ("busy", "no_answer", "voicemail", "failed", "error")
MAX_DELAY_SECONDS = 30 * 24 * 3600

DEFAULT_POLICY: dict[str, dict[str, Any]] = {
    "busy": {"retry": True, "delay_seconds": 600},
    "no_answer": {"retry": True, "delay_seconds": 1800},
    "voicemail": {"retry": False, "delay_seconds": 0},
    "failed": {"retry": False, "delay_seconds": 0},
    "error": {"retry": True, "delay_seconds": 300},
}


def parse_policy(value: Any, field: str = "retry_policy") -> dict[str, dict[str, Any]]:
    """The overrides in ``value``, checked and completed per outcome (an
    outcome given with only ``retry`` keeps the default delay). A WindowError
    names the part that is wrong."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise WindowError(field, f"Expected an object keyed by {', '.join(OUTCOMES)}.")
    out: dict[str, dict[str, Any]] = {}
    for outcome, rule in value.items():
        where = f"{field}.{outcome}"
        if outcome not in OUTCOMES:
            raise WindowError(
                where, f"Unknown outcome {outcome!r}; use {', '.join(OUTCOMES)}."
            )
        if not isinstance(rule, Mapping):
            raise WindowError(where, 'Expected {"retry": bool, "delay_seconds": int}.')
        unknown = set(rule) - {"retry", "delay_seconds"}
        if unknown:
            raise WindowError(f"{where}.{sorted(unknown)[0]}", "Unknown key.")
        retry = rule.get("retry", DEFAULT_POLICY[outcome]["retry"])
        if not isinstance(retry, bool):
            raise WindowError(f"{where}.retry", "Must be true or false.")
        delay = rule.get("delay_seconds", DEFAULT_POLICY[outcome]["delay_seconds"])
        if isinstance(delay, bool) or not isinstance(delay, int):
            raise WindowError(f"{where}.delay_seconds", "Must be an integer.")
        if not 0 <= delay <= MAX_DELAY_SECONDS:
            raise WindowError(
                f"{where}.delay_seconds",
                f"Must be between 0 and {MAX_DELAY_SECONDS} (30 days).",
            )
        out[outcome] = {"retry": retry, "delay_seconds": delay}
    return out


def effective_policy(stored: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The defaults with a batch's overrides on top."""
    return {
        outcome: {**DEFAULT_POLICY[outcome], **dict((stored or {}).get(outcome, {}))}
        for outcome in OUTCOMES
    }


def retry_delay(
    stored: Mapping[str, Any] | None, outcome: str, *, never_connected: bool = False
) -> int | None:
    """Seconds to wait before the next attempt, or None: not retried."""
    if outcome not in OUTCOMES:
        return None
    if outcome == "error" and not never_connected:
        return None
    rule = effective_policy(stored)[outcome]
    return int(rule["delay_seconds"]) if rule["retry"] else None
