"""Claimers: one per process, each with its own database connection.

Processes, not threads, so that the Python cost of a claim path (the ORM for
ours and django-q2) is not serialised by the GIL while the raw baseline runs
mostly inside PostgreSQL: on a 2-core machine that would flatter the raw SQL.

A claimer's `step()` takes work and finishes it (a no-op call): it returns how
many jobs it completed, 0 when it saw nothing to take (a lost race), or None
when the queue is empty.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

RAW_INDEX = "bench_raw_claim_idx"
RAW_INDEX_SQL = (
    f"CREATE INDEX IF NOT EXISTS {RAW_INDEX} ON jobs_job (priority DESC, id)"
    " WHERE status = 'pending'"
)

# The claim's own transaction commits without waiting for its WAL flush, as
# jobs.claim.CLAIM_SQL does: set_config(..., true) lasts for this transaction.
_ASYNC_COMMIT = "SELECT set_config('synchronous_commit', 'off', true)"

# The practical limit: one statement, SKIP LOCKED over a partial index that
# holds exactly the claimable rows in claim order, no batch semantics at all.
# The limit is in the text, as the product prepares its claim: a generic plan
# with LIMIT $1 may sort instead of walking the index.
RAW_CLAIM_SQL = """
WITH c AS (
    SELECT id FROM jobs_job
    WHERE status = 'pending'
    ORDER BY priority DESC, id
    LIMIT {limit}
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs_job AS j
SET status = 'in_progress', claimed_by = %s, claimed_at = now(),
    lease_expires_at = now() + interval '60 seconds', updated_at = now()
FROM c WHERE j.id = c.id
RETURNING j.id, j.phone_number
"""

# The same statement under the claim's commit setting.
RAW_ASYNC_CLAIM_SQL = f"""
WITH async_commit AS ({_ASYNC_COMMIT}),
c AS (
    SELECT id FROM jobs_job
    WHERE status = 'pending'
    ORDER BY priority DESC, id
    LIMIT {{limit}}
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs_job AS j
SET status = 'in_progress', claimed_by = %s, claimed_at = now(),
    lease_expires_at = now() + interval '60 seconds', updated_at = now()
FROM c, async_commit WHERE j.id = c.id
RETURNING j.id, j.phone_number
"""

# The raw CTE doing the work the product's claim does: only jobs of an active,
# unfinished batch, each batch row locked FOR SHARE (what makes pause exact),
# and the claim's commit setting. The baseline of the >= 0.95x target.
RAW_SAME_CLAIM_SQL = f"""
WITH async_commit AS ({_ASYNC_COMMIT}),
c AS (
    SELECT j.id FROM jobs_job j
    JOIN batches_batch b ON b.id = j.batch_id
    WHERE j.status = 'pending' AND b.is_active AND b.completed_at IS NULL
    ORDER BY j.priority DESC, j.id
    LIMIT {{limit}}
    FOR UPDATE OF j SKIP LOCKED
    FOR SHARE OF b SKIP LOCKED
)
UPDATE jobs_job AS j
SET status = 'in_progress', claimed_by = %s, claimed_at = now(),
    lease_expires_at = now() + interval '60 seconds', updated_at = now()
FROM c, async_commit WHERE j.id = c.id
RETURNING j.id, j.phone_number
"""

RAW_FINISH_SQL = """
UPDATE jobs_job SET status = 'completed', finished_at = now(), updated_at = now()
WHERE id = ANY(%s) AND status = 'in_progress'
"""

# The commit setting the peers run with, on every statement of their session.
# Neither django-q2's nor Procrastinate's docs mention synchronous_commit, and
# both document at-least-once delivery; an asynchronous commit lost in a
# server crash can only turn into a redelivery, which both already allow. So
# they get the fastest setting PostgreSQL has, through the connection options
# each documents (Django's DATABASES OPTIONS; Procrastinate's connector
# arguments, passed on to psycopg).
PEER_SYNCHRONOUS_COMMIT = "off"


class Claimer:
    name = "claimer"
    # Seconds the claim statement alone took in the last step, for claimers
    # whose step does more than claim (None: not measured).
    last_claim: float | None = None

    def __init__(self, worker_id: str, limit: int, options: dict[str, Any]):
        self.worker_id = worker_id
        self.limit = limit
        self.options = options

    def setup(self) -> None:
        pass

    def step(self) -> int | None:
        raise NotImplementedError

    def teardown(self) -> None:
        pass


class RawClaimer(Claimer):
    """The practical limit, every commit synchronous (the server default)."""

    name = "raw"
    claim_sql = RAW_CLAIM_SQL

    def setup(self) -> None:
        import psycopg

        self.conn = psycopg.connect(self.options["url"], autocommit=True)
        self.sql = self.claim_sql.format(limit=int(self.limit))

    def step(self) -> int | None:
        rows = self.conn.execute(self.sql, [self.worker_id]).fetchall()
        if not rows:
            return None
        self.conn.execute(RAW_FINISH_SQL, [[r[0] for r in rows]])
        return len(rows)

    def teardown(self) -> None:
        self.conn.close()


class RawAsyncClaimer(RawClaimer):
    """The practical limit, its claim committed as the product's claim is."""

    name = "raw-async"
    claim_sql = RAW_ASYNC_CLAIM_SQL


class RawSameWorkClaimer(RawClaimer):
    """The raw CTE doing the product claim's work (batch join, FOR SHARE on the
    batch rows, the claim's commit setting)."""

    name = "raw-same"
    claim_sql = RAW_SAME_CLAIM_SQL


class OursClaimer(Claimer):
    """Our real path: jobs.claim.claim_jobs, then the worker's own transitions."""

    name = "ours"

    def setup(self) -> None:
        from bench import ours

        self.claim, self.finish = ours.claim_and_finish()

    def step(self) -> int | None:
        t0 = time.monotonic()
        jobs = self.claim(worker_id=self.worker_id, limit=self.limit)
        self.last_claim = time.monotonic() - t0
        if not jobs:
            return None
        self.finish(jobs)
        return len(jobs)


class OursBatchClaimer(OursClaimer):
    """The worker as run_call_worker --concurrency 10 runs it: claims of up to
    10 jobs, one mark_dialed for all of them, then one record_call each."""

    name = "ours-batch"
    batch = 10

    def __init__(self, worker_id: str, limit: int, options: dict[str, Any]):
        super().__init__(worker_id, self.batch, options)


class OursClaimOnly(OursClaimer):
    """claim_jobs, completed by the raw baseline's own UPDATE."""

    name = "ours-claim"

    def setup(self) -> None:
        from bench import ours

        self.claim, self.finish = ours.claim_raw_finish()

    def teardown(self) -> None:
        from django.db import connections

        connections.close_all()


class DjangoQClaimer(Claimer):
    """django-q2's ORM broker: dequeue() then acknowledge() each task.

    In django-q2's own configuration, not this project's: its defaults
    (``bulk`` 1), Django's default of no connection health checks (this
    project's ``conn_health_checks`` would add a ``SELECT 1`` to each of the
    broker's ``close_old_connections()`` calls), a persistent connection (with
    Django's default ``CONN_MAX_AGE`` of 0 those calls would reconnect before
    every broker call), and PEER_SYNCHRONOUS_COMMIT.
    """

    name = "django-q2"
    bulk = 1

    def setup(self) -> None:
        from django.db import connections
        from django_q.brokers import get_broker
        from django_q.conf import Conf

        db = connections[Conf.ORM].settings_dict
        db["CONN_HEALTH_CHECKS"] = False
        db["CONN_MAX_AGE"] = None
        db["OPTIONS"] = {
            **db.get("OPTIONS", {}),
            "options": f"-c synchronous_commit={PEER_SYNCHRONOUS_COMMIT}",
        }
        Conf.BULK = self.bulk
        self.broker = get_broker(self.options.get("list_key", "bench"))

    def step(self) -> int | None:
        tasks = self.broker.dequeue()
        if tasks is None:  # empty queue (dequeue has already slept Conf.POLL)
            return None
        for task_id, _payload in tasks:
            self.broker.acknowledge(task_id)
        return len(tasks)

    def teardown(self) -> None:
        from django.db import connections

        connections.close_all()


class DjangoQBulkClaimer(DjangoQClaimer):
    """django-q2's own batching: ``bulk`` 10, up to 10 tasks per dequeue()."""

    name = "django-q2-bulk"
    bulk = 10


class ProcrastinateClaimer(Claimer):
    """Procrastinate's own worker calls: fetch_job, then finish_job(succeeded).

    Exactly the two statements its worker runs per job (procrastinate_fetch_job_v2
    and procrastinate_finish_job_v1), on a one-connection pool, without the
    worker's task dispatch, heartbeat or listener around them, with
    PEER_SYNCHRONOUS_COMMIT. Procrastinate 3.10 fetches one job per round
    trip whatever its worker's concurrency: it has no batch fetch.
    """

    name = "procrastinate"

    def setup(self) -> None:
        import asyncio

        from bench import peers

        self.loop = asyncio.new_event_loop()
        self.app, self.proc_worker_id = self.loop.run_until_complete(
            peers.procrastinate_open(
                self.options["peer_url"], synchronous_commit=PEER_SYNCHRONOUS_COMMIT
            )
        )
        from procrastinate.jobs import Status

        self.succeeded = Status.SUCCEEDED

    async def _step(self) -> int | None:
        manager = self.app.job_manager
        job = await manager.fetch_job(queues=None, worker_id=self.proc_worker_id)
        if job is None:
            return None
        await manager.finish_job(job, status=self.succeeded, delete_job=False)
        return 1

    def step(self) -> int | None:
        return self.loop.run_until_complete(self._step())

    def teardown(self) -> None:
        self.loop.run_until_complete(self.app.close_async())
        self.loop.close()


KINDS: dict[str, type[Claimer]] = {
    c.name: c
    for c in (
        RawClaimer,
        RawAsyncClaimer,
        RawSameWorkClaimer,
        OursClaimer,
        OursBatchClaimer,
        OursClaimOnly,
        DjangoQClaimer,
        DjangoQBulkClaimer,
        ProcrastinateClaimer,
    )
}


@dataclass
class ClaimerResult:
    jobs: int = 0
    steps: int = 0
    first: float = 0.0
    last: float = 0.0
    # (monotonic start, seconds) of every step, kept only when asked for.
    samples: list[tuple[float, float]] = field(default_factory=list)
    # The same for the claim statement alone, where the claimer measures it.
    claim_samples: list[tuple[float, float]] = field(default_factory=list)
    error: str = ""


def _child(
    kind: str,
    worker_id: str,
    limit: int,
    options: dict[str, Any],
    start: Any,
    stop: Any,
    out: Any,
    keep_samples: bool,
    drain: bool,
    quota: int,
) -> None:
    result = ClaimerResult()
    pace = float(options.get("pace", 0.0))
    try:
        if options.get("nice"):
            # As run_call_worker does (WORKER_NICE): the claimers stand in
            # for workers sharing the host with the web process.
            from jobs.worker import lower_cpu_priority

            lower_cpu_priority(int(options["nice"]))
        claimer = KINDS[kind](worker_id, limit, options)
        claimer.setup()
        start.wait()
        result.first = time.monotonic()
        while not stop.is_set():
            t0 = time.monotonic()
            n = claimer.step()
            t1 = time.monotonic()
            if keep_samples:
                result.samples.append((t0, t1 - t0))
                if claimer.last_claim is not None:
                    result.claim_samples.append((t0, claimer.last_claim))
            if pace:
                time.sleep(pace)
            if n is None:
                if drain:
                    break
                time.sleep(0.001)
                continue
            result.steps += 1
            if n:
                result.jobs += n
                result.last = t1
                if quota and result.jobs >= quota:
                    break
        claimer.teardown()
    except Exception as exc:  # reported in the results, never hidden
        result.error = f"{type(exc).__name__}: {exc}"
    out.put(result)


@dataclass
class Run:
    kind: str
    claimers: int
    jobs: int
    seconds: float
    results: list[ClaimerResult]

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds if self.seconds > 0 else 0.0

    @property
    def errors(self) -> list[str]:
        return [r.error for r in self.results if r.error]


class Pool:
    """Start N claimer processes, release them together, collect results."""

    def __init__(
        self,
        kind: str,
        n: int,
        *,
        limit: int = 1,
        options: dict[str, Any] | None = None,
        keep_samples: bool = False,
        drain: bool = True,
        quota: int = 0,
    ):
        from django.db import connections

        # Forked children must not share the parent's sockets.
        connections.close_all()
        ctx = mp.get_context("fork")
        self.kind = kind
        self.start_event = ctx.Event()
        self.stop_event = ctx.Event()
        self.out: Any = ctx.Queue()
        self.procs = [
            ctx.Process(
                target=_child,
                args=(
                    kind,
                    f"bench-{kind}-{os.getpid()}-{i}",
                    limit,
                    options or {},
                    self.start_event,
                    self.stop_event,
                    self.out,
                    keep_samples,
                    drain,
                    quota,
                ),
                daemon=True,
            )
            for i in range(n)
        ]
        for p in self.procs:
            p.start()
        self.t0 = 0.0

    def go(self, settle: float = 0.3) -> None:
        time.sleep(settle)  # let every child connect before the clock starts
        self.t0 = time.monotonic()
        self.start_event.set()

    def finish(self, timeout: float = 600) -> Run:
        results = [self.out.get(timeout=timeout) for _ in self.procs]
        for p in self.procs:
            p.join(timeout=10)
        jobs = sum(r.jobs for r in results)
        last = max((r.last for r in results if r.jobs), default=self.t0)
        return Run(self.kind, len(self.procs), jobs, last - self.t0, results)

    def stop(self) -> Run:
        self.stop_event.set()
        return self.finish()


def drain(
    kind: str,
    n: int,
    *,
    limit: int = 1,
    options: dict[str, Any] | None = None,
    quota: int = 0,
    seconds: float = 0,
    until_empty: bool = True,
) -> Run:
    """Run N claimers until the queue is empty, each has done `quota` jobs, or
    `seconds` have passed, whichever comes first. With ``until_empty`` off a
    claimer that finds nothing tries again (as a worker does) until the
    time is up: a claim that a capped batch's lock turned away is not the
    end of the queue."""
    pool = Pool(kind, n, limit=limit, options=options, quota=quota, drain=until_empty)
    pool.go()
    if seconds:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and any(p.is_alive() for p in pool.procs):
            time.sleep(0.02)
        pool.stop_event.set()
    return pool.finish()


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0
