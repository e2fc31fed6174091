"""Consent for artificial voices (FCC 24-17): a batch whose ``voice`` is
``ai`` or ``prerecorded`` dials only jobs with ``consent_at`` set.

A job without it is refused at the gate: cancelled with stop code
``no_consent``, not left waiting. Consent must exist before the call; a job
that has none when its turn comes is a data error of the import, and
leaving it pending would have every claim take it and put it back. Until its
turn comes, ``explain`` reports ``no_consent`` and the consent can still be
recorded (``PATCH /api/v1/jobs/{id}`` with ``consent_at``).
"""

from __future__ import annotations

from datetime import datetime

from jobs.models import Job
from jobs.rules import GateContext, Reason, Refuse, Verdict

CODE = "no_consent"
NEEDS_CONSENT = frozenset({"ai", "prerecorded"})

COLUMNS = {"batch_voice": "b.voice", "job_consent_at": "j.consent_at"}


def detail(voice: str) -> str:
    return (
        f"The batch calls with a {voice} voice, which needs the person's prior "
        "express consent (FCC 24-17); the job has no consent_at."
    )


def check(jobs: list[Job], context: GateContext) -> dict[int, Verdict]:
    found: dict[int, Verdict] = {}
    for job in jobs:
        row = context.row(job)
        voice = row.get("batch_voice") or "human"
        if voice in NEEDS_CONSENT and row.get("job_consent_at") is None:
            found[job.pk] = Refuse(CODE, detail(voice))
    return found


def explain(job: Job, now: datetime) -> list[Reason]:
    voice = job.batch.voice if job.batch_id and job.batch else "human"
    if voice in NEEDS_CONSENT and job.consent_at is None:
        return [Reason(CODE, detail(voice))]
    return []
