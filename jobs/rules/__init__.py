"""The dial gate's rules: who may be called, checked as a call is marked dialled.

Every rule that can stop a call is checked in the transaction that marks the
call dialled (``jobs.lifecycle.mark_dialed``), so a change committed before
that transaction (a new DNC entry, a narrowed country list, a consent
withdrawn) holds for the dial. The interface, for a rule module ``m`` listed
in ``RULES``:

- ``m.COLUMNS``: ``{name: SQL expression}``, the data the rule needs for one
  job. The expressions may use ``j`` (the job's row as just marked), ``a``
  (its account) and ``b`` (its batch, NULL for a one-off job). They are read
  in the mark statement itself: one statement for the round, whatever the
  number of rules. Names must be unique across rules.
- ``m.check(jobs, context) -> dict[job_id, Verdict]``: the jobs the rule
  stops, each with ``Refuse(code, detail)`` (the job is cancelled, audited,
  its attempt and reservation given back) or ``Defer(code, until, detail)``
  (the job goes back to ``scheduled`` at ``until``; no attempt is spent).
  Jobs the rule lets through are left out. ``context.row(job)`` holds the
  rule's columns; ``context.now`` is the database's clock.
- ``m.explain(job, now) -> list[Reason]`` (optional): why ``job`` is not
  callable under this rule right now, for ``GET /jobs/{id}/explain``; it may
  query the database. Explainers that are not gate rules (a paused batch,
  a retry waiting) are in ``jobs/explain.py``'s registry.

The first rule (in ``RULES`` order) that stops a job decides its verdict.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import ModuleType
from typing import Any

from jobs.models import Job


@dataclass(frozen=True)
class Refuse:
    """The job must never be dialled: it ends ``cancelled``."""

    code: str
    detail: str


@dataclass(frozen=True)
class Defer:
    """The job may not be dialled before ``until``: it waits, scheduled."""

    code: str
    until: datetime
    detail: str


Verdict = Refuse | Defer


@dataclass(frozen=True)
class Reason:
    """One reason why a job is not (or is) being called, for explain."""

    code: str
    detail: str
    until: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "detail": self.detail,
            "until": self.until.isoformat() if self.until else None,
        }


@dataclass
class GateContext:
    """What the mark statement read for the rules, per job id."""

    now: datetime
    rows: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)

    def row(self, job: Job) -> Mapping[str, Any]:
        return self.rows.get(job.pk, {})


def _modules() -> list[ModuleType]:
    from jobs.rules import calling_window, consent, dnc, number_rules

    # Order matters only for which verdict a job stopped by several rules
    # gets: the most permanent first (a refusal ends the job, a deferral
    # only puts it back).
    return [dnc, number_rules, consent, calling_window]


RULES: list[ModuleType] = []
# Threads of one process (a worker's, a test's) may ask at once: the list
# is filled once, under the lock.
_RULES_LOCK = threading.Lock()


def rules() -> list[ModuleType]:
    if not RULES:
        with _RULES_LOCK:
            if not RULES:
                RULES.extend(_modules())
    return RULES


def columns() -> dict[str, str]:
    """Every rule's columns, for the mark statement."""
    merged: dict[str, str] = {}
    for module in rules():
        for name, sql in getattr(module, "COLUMNS", {}).items():
            if name in merged:
                raise ValueError(f"gate column {name!r} is defined twice")
            merged[name] = sql
    return merged


def verdicts(jobs: Iterable[Job], context: GateContext) -> dict[int, Verdict]:
    """The verdict of every job some rule stops; the first rule wins."""
    jobs = list(jobs)
    found: dict[int, Verdict] = {}
    for module in rules():
        candidates = [job for job in jobs if job.pk not in found]
        if not candidates:
            break
        for job_id, verdict in module.check(candidates, context).items():
            found.setdefault(job_id, verdict)
    return found
