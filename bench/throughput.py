"""1. Claim throughput: ours against raw SQL baselines and the two peers.

Every system gets a backlog of no-op jobs (40,000 in a full run's first
trial, then twice what the system did in its last trial) and N claimer
processes claim and complete them for a fixed time (at least 5 s in a full
run); the rate is jobs completed / time to the last completion, and a trial
whose backlog ran dry is reported. Each point is repeated
(at least 5 times in a full run) and the order of the systems rotates between
repetitions. A ratio is taken within each repetition (the two systems ran
minutes apart at most), and a ratio's target passes only if the median of
those ratios does; the table shows the median and the range.

Commit settings, per job:

* ours, claim path: the claim commits without waiting for its WAL flush
  (jobs.claim), the finishing UPDATE waits: one flush;
* raw CTE: both statements wait (the server default): two flushes;
* raw CTE, claim committed as ours: one flush, as ours;
* raw CTE, same work: the batch join, FOR SHARE on the batch rows and the
  claim's commit setting: the baseline of the >= 0.95x target;
* django-q2 and Procrastinate: synchronous_commit off for their whole
  session (claimers.PEER_SYNCHRONOUS_COMMIT): no flush.

"ours-batch" claims up to 10 jobs at a time, as run_call_worker
--concurrency 10 does, and is set against django-q2 with its own batching
(bulk 10). Procrastinate has no batch fetch, so claims of 10 against it
carry no target.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.db import connection

from bench import before, claimers, datagen, peers
from bench.context import Context
from bench.report import median, spread
from bench.waits import WaitSampler, top

SECTION = "1 throughput"
KINDS = (
    "ours",
    "ours-batch",
    "ours-claim",
    "raw",
    "raw-async",
    "raw-same",
    "django-q2",
    "django-q2-bulk",
    "procrastinate",
)
RAW_KINDS = ("raw", "raw-async", "raw-same")
SAMPLED = ("ours-claim", "raw", "raw-same")


def _prepare(ctx: Context, kind: str, count: int, batches: list[int], account: int):
    if kind.startswith("ours") or kind in RAW_KINDS:
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE jobs_job CASCADE")
            if kind in RAW_KINDS:
                cursor.execute(claimers.RAW_INDEX_SQL)
            else:
                cursor.execute(f"DROP INDEX IF EXISTS {claimers.RAW_INDEX}")
            # A run fast enough to drain a batch completes it; a completed
            # batch is never claimed again, so reopen them for this run.
            cursor.execute(
                "UPDATE batches_batch SET completed_at = NULL WHERE id = ANY(%s)",
                [batches],
            )
        datagen.insert_jobs(account, batches, count // len(batches))
        datagen.vacuum_analyze("jobs_job")
    elif kind.startswith("django-q2"):
        peers.djangoq_fill(count)
    else:
        peers.procrastinate_fill(ctx.dbs.peer_url, count)


@dataclass(frozen=True)
class Comparison:
    mine: str
    peer: str
    target: str = ""
    ok: Callable[[float], bool] | None = None
    why: str = ""


COMPARISONS = (
    # The claim path (claim one job, mark it done) does what a peer's fetch +
    # finish does, so it carries the peer targets. Against the raw CTE doing
    # the same work under the same commit setting it must be within 5%.
    Comparison(
        "ours-claim",
        "raw-same",
        ">= 0.95x",
        lambda r: r >= 0.95,
        "same work, same commit setting",
    ),
    Comparison(
        "ours-claim",
        "raw",
        ">= 0.8x",
        lambda r: r >= 0.8,
        "the practical limit: no batch semantics, two synchronous commits",
    ),
    Comparison("ours-claim", "raw-async", why="the practical limit, one flush"),
    Comparison("ours-claim", "django-q2", "> 1x", lambda r: r > 1),
    Comparison("ours-claim", "procrastinate", "> 1x", lambda r: r > 1),
    # The worker lifecycle also reserves and settles credits, writes the dial
    # mark before the call, the attempt log, the completion check and the
    # webhook lookup. Claims of 10 are set against django-q2's own batching.
    Comparison(
        "ours-batch",
        "django-q2-bulk",
        "> 1x",
        lambda r: r > 1,
        "each side with its own batching",
    ),
    Comparison("ours-batch", "django-q2", why="django-q2 fetching one at a time"),
    Comparison(
        "ours-batch",
        "procrastinate",
        why="no target: Procrastinate has no batch fetch",
    ),
    Comparison(
        "ours",
        "procrastinate",
        ">= 0.8x",
        lambda r: r >= 0.8,
        "one job per claim; expected missed until the worker rework",
    ),
    Comparison("ours", "django-q2", why="one job per claim"),
)


def run(ctx: Context) -> None:
    sizes = ctx.sizes
    datagen.truncate_jobs()
    account = datagen.create_account("bench-throughput")
    batches = datagen.create_batches(account, 10, active=True, prefix="tp")
    peers.procrastinate_fill(ctx.dbs.peer_url, 0, apply_schema=True)
    options = {"url": ctx.dbs.url, "peer_url": ctx.dbs.peer_url}
    # rates[kind][n][rep]: None where the trial failed, so that the ratios
    # stay paired by repetition.
    rates: dict[str, dict[int, list[float | None]]] = {
        k: {n: [] for n in sizes.claimers} for k in KINDS
    }
    seconds: dict[str, dict[int, list[float]]] = {
        k: {n: [] for n in sizes.claimers} for k in KINDS
    }
    errors: dict[str, str] = {}
    waits: dict[str, list[dict[str, float]]] = {}
    kinds = tuple(k for k in KINDS if not ctx.kinds or k in ctx.kinds)
    for rep in range(sizes.reps):
        order = kinds[rep % len(kinds) :] + kinds[: rep % len(kinds)]
        for n in sizes.claimers:
            for kind in order:
                rates[kind][n].append(None)
                if kind in errors:
                    continue
                # A backlog twice what this system did last time in a trial,
                # so that none runs dry, and slow systems are not made to wait
                # for 40,000 rows to be written before each trial.
                done = [r for r in rates[kind][n] if r is not None]
                backlog = sizes.throughput_jobs
                if done:
                    need = int(2 * done[-1] * sizes.throughput_seconds)
                    backlog = min(backlog, max(2000, need))
                _prepare(ctx, kind, backlog, batches, account)
                sampler = None
                if n == max(sizes.claimers) and kind in SAMPLED:
                    sampler = WaitSampler(ctx.dbs.url)
                    sampler.start()
                result = claimers.drain(
                    kind, n, options=options, seconds=sizes.throughput_seconds
                )
                if sampler:
                    waits.setdefault(kind, []).append(sampler.stop())
                if result.errors:
                    errors[kind] = result.errors[0]
                    continue
                if not result.jobs:
                    # Never a silent zero in a median: say so in the report.
                    ctx.report.missing.append(
                        f"throughput {kind}, {n} claimers: no job claimed"
                    )
                    continue
                if result.seconds < 0.95 * sizes.throughput_seconds:
                    ctx.report.missing.append(
                        f"throughput {kind}, {n} claimers, rep {rep + 1}: the"
                        f" backlog of {backlog:,} ran out after"
                        f" {result.seconds:.1f} s"
                    )
                rates[kind][n][-1] = result.rate
                seconds[kind][n].append(result.seconds)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX IF EXISTS {claimers.RAW_INDEX}")
    ctx.report.raw["throughput"] = {
        "rates": rates,
        "seconds": seconds,
        "errors": errors,
        "waits": waits,
        "peer_synchronous_commit": claimers.PEER_SYNCHRONOUS_COMMIT,
    }
    for kind, err in errors.items():
        ctx.report.missing.append(f"throughput {kind}: {err}")
    for n in sizes.claimers:
        for kind in kinds:
            got = [r for r in rates[kind][n] if r is not None]
            ctx.report.add(
                SECTION,
                f"{LABELS[kind]}, {n} claimers",
                median(got) if got else None,
                "jobs/s",
                spread=spread(got, "{:,.0f}"),
                key=f"rate:{kind}:{n}",
                before=before.figure(f"rate:{kind}:{n}"),
            )
        for c in COMPARISONS:
            if c.mine not in kinds or c.peer not in kinds:
                continue
            pairs = [
                a / b
                for a, b in zip(rates[c.mine][n], rates[c.peer][n], strict=True)
                if a is not None and b
            ]
            if not pairs:
                continue
            ratio = median(pairs)
            note = c.why
            if c.peer in ("raw", "raw-same") and n == max(sizes.claimers) and waits:
                note += "; server waits at {} claimers, ours: {}; {}: {}".format(
                    n,
                    top(waits.get("ours-claim", [{}])[-1]),
                    c.peer,
                    top(waits.get(c.peer, [{}])[-1]),
                )
            key = f"ratio:{c.mine}/{c.peer}:{n}"
            ctx.report.add(
                SECTION,
                f"{LABELS[c.mine]} / {LABELS[c.peer]}, {n} claimers",
                None,
                "",
                target=c.target,
                passed=c.ok(ratio) if c.ok else None,
                ratio=ratio,
                note=note.strip("; "),
                spread=spread(pairs, "{:.2f}"),
                key=key,
                before=before.figure(key),
            )


LABELS = {
    "ours": "ours (worker lifecycle, 1 job per claim)",
    "ours-batch": "ours (worker lifecycle, claims of 10)",
    "ours-claim": "ours (claim path: claim_jobs + finish)",
    "raw": "raw CTE (practical limit, synchronous commits)",
    "raw-async": "raw CTE (practical limit, claim committed as ours)",
    "raw-same": "raw CTE (same work as ours: batch join, FOR SHARE, same commit)",
    "django-q2": "django-q2 ORM broker (bulk 1)",
    "django-q2-bulk": "django-q2 ORM broker (bulk 10)",
    "procrastinate": "procrastinate",
}
