"""Our claim path, as the worker runs it.

Two ways to finish a claimed job, so that the claim itself can be compared
with the raw CTE on equal terms:

* ``lifecycle`` (the "ours" claimer): what run_call_worker does for calls
  that end at once with ``answered``: billing.reserve_calls, then
  lifecycle.mark_dialed (spends the attempt, its own commit, before the
  dial), then lifecycle.record_calls (appends the attempt log, completes the
  jobs; the jobs_finished receivers check the batch's completion and look for
  webhook endpoints), then billing.settle_calls;
* ``raw finish`` (the "ours-claim" claimer): claim_jobs, then the very UPDATE
  the raw baseline uses to complete its jobs.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any


class Missing(RuntimeError):
    """A piece of the product the bench needs has not landed yet."""


def _require_claim() -> None:
    if importlib.util.find_spec("jobs.claim") is None:
        raise Missing("jobs.claim.claim_jobs is missing (worker branch not merged)")


def claim_and_finish() -> tuple[Callable[..., list[Any]], Callable[[list[Any]], None]]:
    """claim_jobs and the worker's own per-call transitions for a no-op call."""
    _require_claim()
    from jobs import billing, lifecycle
    from jobs.claim import claim_jobs
    from jobs.dialers.base import CallResult, Outcome

    answered = CallResult(outcome=Outcome.ANSWERED)

    def finish(jobs: list[Any]) -> None:
        # What CallWorker.claim() and CallWorker.finish_calls() do, in order,
        # for calls that end at once.
        worker_id = jobs[0].claimed_by
        payable = billing.reserve_calls(jobs, worker_id=worker_id)
        dialed = lifecycle.mark_dialed(jobs=payable, worker_id=worker_id)
        lifecycle.record_calls(
            worker_id=worker_id,
            ended=[
                lifecycle.CallEnd(job.pk, job.dialed_at, "", answered) for job in dialed
            ],
        )
        billing.settle_calls(
            [(job, answered.duration_seconds, answered.outcome) for job in dialed]
        )

    return claim_jobs, finish


def claim_raw_finish() -> tuple[Callable[..., list[Any]], Callable[[list[Any]], None]]:
    """claim_jobs, finished by the raw baseline's completion UPDATE."""
    _require_claim()
    from django.db import connection

    from bench.claimers import RAW_FINISH_SQL
    from jobs.claim import claim_jobs

    def finish(jobs: list[Any]) -> None:
        with connection.cursor() as cursor:
            cursor.execute(RAW_FINISH_SQL, [[job.pk for job in jobs]])

    return claim_jobs, finish
