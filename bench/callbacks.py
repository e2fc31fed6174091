"""10. Provider callbacks per second handled by the web process.

gunicorn runs the project with its production configuration
(callcenter/gunicorn.conf.py: sync workers, 2 per core + 1, access log on)
on loopback. Before each trial the bench puts real call attempts in flight
exactly as the worker does before it asks a provider to place a call
(``claim_jobs``, ``billing.reserve_calls``, ``lifecycle.mark_dialed`` with
the dialer's name, which writes each ``CallAttempt`` row and its fencing
token): half for ``--dialer twilio``, half for ``--dialer http``.

Each attempt then gets the callbacks its provider would send, signed as the
provider signs them, all built before the trial starts:

* Twilio: form-encoded status callbacks to
  ``/api/v1/telephony/twilio/status/<token>``, ``X-Twilio-Signature``
  computed with the official library's ``RequestValidator`` over the URL
  built from PUBLIC_BASE_URL (the server sees loopback; as behind a TLS
  proxy, the signed URL is the public one);
* the voice-agent platform: JSON to ``/api/v1/telephony/http/events/<token>``
  signed per Standard Webhooks by the off-the-shelf ``standardwebhooks``
  library with HTTP_DIALER_SECRET.

Per attempt, in order: ``ringing``, ``in-progress`` (answered by a human),
then the final event (``completed`` / ``ended`` answered, 42 s), which
goes through ``record_calls`` and the settlement; one attempt in ten ends
unanswered after ``ringing`` (``no-answer``: the retry path). The load
generator (bench/loadgen.py, a process of its own) sends them on
``CALLBACK_LANES`` lanes at once, each lane one attempt's events after
another, each on a new connection.

Figures: accepted (2xx) callbacks per second (from the first request sent to
the last answer) and their latency p50 / p99, median of the trials; every
non-2xx answer is counted, and after each trial every attempt must have
ended and every job be where its final event put it.
"""

from __future__ import annotations

import json
import os
import pickle
import resource
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from django.db import connection

from bench import datagen, server
from bench.context import Context
from bench.report import median, percentile, spread

SECTION = "10 callbacks"
PUBLIC_BASE_URL = "https://callcenter.bench.invalid"
ACCOUNT_SID = "AC" + "b" * 32
AUTH_TOKEN = "bench" + "0" * 27
TWILIO_PATH = "/api/v1/telephony/twilio/status/"
HTTP_PATH = "/api/v1/telephony/http/events/"
# Requests in flight at once: a few per gunicorn worker (5 on 2 cores), so
# that a worker never waits for the generator.
CALLBACK_LANES = 16
TARGET_RATE = 1000.0
TARGET_P99_MS = 50.0
WORKER_ID = "bench-callbacks"
CLAIM_CHUNK = 500


def attempts_per_trial(ctx: Context) -> int:
    return int(os.environ.get("BENCH_CALLBACK_ATTEMPTS", 150 if ctx.quick else 2000))


# --- attempts in flight -----------------------------------------------------


def truncate() -> None:
    datagen.truncate_jobs()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE jobs_callattempt")


def put_in_flight(total: int, *, slug: str) -> dict[str, list[dict[str, Any]]]:
    """``total`` attempts in flight, half per dialer, made by the worker's
    own services; returns each dialer's attempts (token, job, number)."""
    from jobs import billing, lifecycle
    from jobs.claim import claim_jobs
    from jobs.models import CallAttempt

    account = datagen.create_account(slug)
    twilio_batch, http_batch = datagen.create_batches(
        account, 2, active=True, prefix=slug
    )
    half = total // 2
    datagen.insert_jobs(account, [twilio_batch], half)
    datagen.insert_jobs(account, [http_batch], total - half, start=10**6)
    datagen.vacuum_analyze()
    dialer_of = {twilio_batch: "twilio", http_batch: "http"}
    token = secrets.token_hex(16)
    while True:
        jobs = claim_jobs(worker_id=WORKER_ID, token=token, limit=CLAIM_CHUNK)
        if not jobs:
            break
        payable = billing.reserve_calls(jobs, worker_id=WORKER_ID, token=token)
        for batch_id, dialer in dialer_of.items():
            lifecycle.mark_dialed(
                jobs=[job for job in payable if job.batch_id == batch_id],
                worker_id=WORKER_ID,
                token=token,
                dialer=dialer,
            )
    out: dict[str, list[dict[str, Any]]] = {"twilio": [], "http": []}
    for row in CallAttempt.objects.filter(ended_at__isnull=True).values(
        "token", "job_id", "phone_number", "dialer"
    ):
        out[row["dialer"]].append(row)
    if len(out["twilio"]) + len(out["http"]) != total:
        raise RuntimeError(
            f"{len(out['twilio'])} + {len(out['http'])} attempts in flight,"
            f" {total} wanted"
        )
    return out


# --- the provider's requests ------------------------------------------------


def _raw(host: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    head = [f"POST {path} HTTP/1.1", f"Host: {host}", "Connection: close"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def twilio_events(attempt: dict[str, Any], unanswered: bool) -> list[tuple]:
    """Twilio's status callbacks for one call, as (status, params)."""
    sid = "CA" + uuid.uuid4().hex
    common = {
        "AccountSid": ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "CallSid": sid,
        "Called": attempt["phone_number"],
        "Caller": "+14155550100",
        "Direction": "outbound-api",
        "From": "+14155550100",
        "To": attempt["phone_number"],
        "CallbackSource": "call-progress-events",
    }
    steps: list[tuple[str, dict[str, str]]] = [("ringing", {})]
    if unanswered:
        steps.append(("no-answer", {"CallDuration": "0", "Duration": "0"}))
    else:
        steps.append(("in-progress", {"AnsweredBy": "human"}))
        steps.append(
            (
                "completed",
                {"AnsweredBy": "human", "CallDuration": "42", "Duration": "1"},
            )
        )
    stamp = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
    return [
        (
            status,
            {
                **common,
                "CallStatus": status,
                "Timestamp": stamp,
                "SequenceNumber": str(n),
                **extra,
            },
        )
        for n, (status, extra) in enumerate(steps)
    ]


def twilio_requests(
    attempt: dict[str, Any], *, host: str, unanswered: bool
) -> list[tuple[str, bytes]]:
    from twilio.request_validator import RequestValidator

    validator = RequestValidator(AUTH_TOKEN)
    path = f"{TWILIO_PATH}{attempt['token']}"
    out = []
    for status, params in twilio_events(attempt, unanswered):
        signature = validator.compute_signature(f"{PUBLIC_BASE_URL}{path}", params)
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
            "User-Agent": "TwilioProxy/1.1",
        }
        kind = "progress" if status in ("ringing", "in-progress") else "final"
        out.append(
            (f"twilio:{kind}", _raw(host, path, headers, urlencode(params).encode()))
        )
    return out


def http_requests(
    attempt: dict[str, Any], *, host: str, secret: str, unanswered: bool
) -> list[tuple[str, bytes]]:
    from standardwebhooks.webhooks import Webhook

    webhook = Webhook(secret)
    path = f"{HTTP_PATH}{attempt['token']}"
    call_id = f"agent-{uuid.uuid4().hex}"
    events: list[dict[str, Any]] = [{"status": "ringing"}]
    if unanswered:
        events.append({"status": "ended", "outcome": "no_answer"})
    else:
        events.append({"status": "in-progress", "answered_by": "human"})
        events.append(
            {
                "status": "ended",
                "outcome": "answered",
                "answered_by": "human",
                "duration_seconds": 42,
            }
        )
    out = []
    now = datetime.now(UTC)
    for event in events:
        body = json.dumps(
            {
                "type": "call.status",
                "attempt_id": attempt["token"],
                "call_id": call_id,
                **event,
            }
        )
        msg_id = f"evt_{uuid.uuid4().hex}"
        headers = {
            "Content-Type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": webhook.sign(msg_id, now, body),
        }
        kind = "final" if event["status"] == "ended" else "progress"
        out.append((f"http:{kind}", _raw(host, path, headers, body.encode())))
    return out


def build_lanes(
    attempts: dict[str, list[dict[str, Any]]], *, host: str, secret: str, lanes: int
) -> list[list[tuple[str, bytes]]]:
    """Each attempt's callbacks in order on one lane; attempts of both
    providers alternate and are spread over the lanes."""
    per_attempt = []
    for n, (twilio, http) in enumerate(
        zip(attempts["twilio"], attempts["http"], strict=False)
    ):
        unanswered = n % 10 == 9
        per_attempt.append(twilio_requests(twilio, host=host, unanswered=unanswered))
        per_attempt.append(
            http_requests(http, host=host, secret=secret, unanswered=unanswered)
        )
    out: list[list[tuple[str, bytes]]] = [[] for _ in range(lanes)]
    for n, requests in enumerate(per_attempt):
        out[n % lanes].extend(requests)
    return out


# --- a trial ------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/PID/stat (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_pids(master: int) -> dict[str, list[int]]:
    """gunicorn's workers, and the PostgreSQL backends of the bench database
    other than the bench's own connection."""
    try:
        with open(f"/proc/{master}/task/{master}/children") as fh:
            workers = [int(p) for p in fh.read().split()]
    except OSError:
        workers = []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        backends = [int(row[0]) for row in cursor.fetchall()]
    return {"web": workers, "postgresql": backends}


def fire(plan_lanes: list[list[tuple[str, bytes]]], port: int) -> list[list[Any]]:
    with tempfile.TemporaryDirectory(prefix="bench-callbacks-") as tmp:
        plan = Path(tmp) / "plan.pickle"
        out = Path(tmp) / "out.json"
        plan.write_bytes(
            pickle.dumps({"host": "127.0.0.1", "port": port, "lanes": plan_lanes})
        )
        subprocess.run(
            [sys.executable, "-m", "bench.loadgen", str(plan), str(out)],
            cwd=server.ROOT,
            check=True,
            timeout=1000,
        )
        return json.loads(out.read_text())["samples"]


def summarise(samples: list[list[Any]]) -> dict[str, Any]:
    ok = [s for s in samples if 200 <= s[4] < 300]
    start = min(s[2] for s in samples)
    end = max(s[3] for s in samples)
    latencies = [(s[3] - s[2]) * 1000 for s in ok]
    by_tag: dict[str, list[float]] = {}
    for s in ok:
        by_tag.setdefault(s[1], []).append((s[3] - s[2]) * 1000)
    statuses: dict[str, int] = {}
    for s in samples:
        statuses[str(s[4])] = statuses.get(str(s[4]), 0) + 1
    return {
        "sent": len(samples),
        "finals": sum(1 for s in samples if s[1].endswith(":final")),
        "accepted": len(ok),
        "seconds": end - start,
        "rate": len(ok) / (end - start),
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies, default=float("nan")),
        "statuses": statuses,
        "p50_by_kind_ms": {k: percentile(v, 50) for k, v in sorted(by_tag.items())},
        "p99_by_kind_ms": {k: percentile(v, 99) for k, v in sorted(by_tag.items())},
    }


def check_outcome(
    attempts: dict[str, list[dict[str, Any]]],
) -> dict[str, int]:
    """Where the callbacks left the jobs and attempts; every attempt must
    have ended, answered jobs completed and unanswered ones back in line."""
    from jobs.models import CallAttempt, Job

    total = sum(len(v) for v in attempts.values())
    unanswered = sum(
        1
        for n, _ in enumerate(zip(attempts["twilio"], attempts["http"], strict=False))
        if n % 10 == 9
    )
    facts = {
        "attempts": total,
        "ended": CallAttempt.objects.filter(ended_at__isnull=False).count(),
        "answered": CallAttempt.objects.filter(outcome="answered").count(),
        "completed_jobs": Job.objects.filter(status="completed").count(),
        "retrying_jobs": Job.objects.filter(
            status__in=("pending", "scheduled")
        ).count(),
        "expected_unanswered": 2 * unanswered,
    }
    facts["correct"] = int(
        facts["ended"] == total
        and facts["answered"] == facts["completed_jobs"] == total - 2 * unanswered
        and facts["retrying_jobs"] == 2 * unanswered
    )
    return facts


def server_env(secret: str) -> dict[str, str]:
    return {
        "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "HTTP_DIALER_SECRET": secret,
    }


def run(ctx: Context) -> None:
    from callcenter.standard_webhooks import generate_secret

    server.require_api()
    reps = ctx.sizes.reps
    total = attempts_per_trial(ctx)
    secret = generate_secret()
    trials: list[dict[str, Any]] = []
    with server.Server(production_config=True, env=server_env(secret)) as srv:
        host = f"127.0.0.1:{srv.port}"
        # Every gunicorn worker loads the app before anything is timed.
        truncate()
        warm = put_in_flight(40, slug="bench-callbacks")
        fire(build_lanes(warm, host=host, secret=secret, lanes=8), srv.port)
        for rep in range(reps):
            truncate()
            attempts = put_in_flight(total, slug="bench-callbacks")
            lanes = build_lanes(
                attempts, host=host, secret=secret, lanes=CALLBACK_LANES
            )
            load = [round(x, 2) for x in os.getloadavg()]
            pids = server_pids(srv.proc.pid)
            cpu0 = {k: sum(map(cpu_seconds, v)) for k, v in pids.items()}
            gen0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            samples = fire(lanes, srv.port)
            wall = time.perf_counter() - t0
            gen1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = {k: sum(map(cpu_seconds, v)) - cpu0[k] for k, v in pids.items()}
            cpu["load generator"] = (gen1.ru_utime + gen1.ru_stime) - (
                gen0.ru_utime + gen0.ru_stime
            )
            trial = {
                "rep": rep,
                "loadavg_before": load,
                "wall_seconds": wall,
                **summarise(samples),
                **check_outcome(attempts),
                # CPU spent per callback (ms), whatever else the machine ran.
                "cpu_ms_per_callback": {
                    k: 1000 * v / len(samples) for k, v in cpu.items()
                },
            }
            trials.append(trial)
            print(
                f"[bench] callbacks trial {rep + 1}/{reps}: {trial['rate']:.0f}/s,"
                f" p50 {trial['p50_ms']:.1f} ms, p99 {trial['p99_ms']:.1f} ms,"
                f" statuses {trial['statuses']}, correct {trial['correct']}",
                file=sys.stderr,
                flush=True,
            )
    truncate()
    ctx.report.raw["callbacks"] = {"lanes": CALLBACK_LANES, "trials": trials}
    rates = [t["rate"] for t in trials]
    p50s = [t["p50_ms"] for t in trials]
    p99s = [t["p99_ms"] for t in trials]
    rejected = sum(t["sent"] - t["accepted"] for t in trials)
    correct = all(t["correct"] for t in trials)
    rate, p99 = median(rates), median(p99s)
    kinds = trials[-1]["p99_by_kind_ms"]
    cpu_ms = {
        k: median([t["cpu_ms_per_callback"][k] for t in trials])
        for k in trials[0]["cpu_ms_per_callback"]
    }
    cores = os.cpu_count() or 1
    ctx.report.add(
        SECTION,
        f"signed provider callbacks accepted per second, gunicorn"
        f" ({CALLBACK_LANES} at once)",
        rate,
        "callbacks/s",
        target=f">= {TARGET_RATE:,.0f}/s",
        passed=rate >= TARGET_RATE and rejected == 0 and correct,
        ratio=rate / TARGET_RATE,
        spread=spread(rates, "{:,.0f}"),
        key="callbacks:rate",
        note=f"{trials[0]['sent']:,} callbacks per trial ({total:,} attempts, half"
        f" Twilio, half HTTP; {trials[0]['finals']:,} final); non-2xx: {rejected};"
        f" load average {trials[0]['loadavg_before'][0]} before the first trial;"
        f" jobs and"
        f" attempts as the events say: {'yes' if correct else 'NO'}",
    )
    ctx.report.add(
        SECTION,
        "callback latency p99 (p50)",
        p99,
        "ms",
        target=f"p99 <= {TARGET_P99_MS:.0f} ms",
        passed=p99 <= TARGET_P99_MS,
        spread=spread(p99s, "{:.1f}"),
        key="callbacks:p99",
        note=f"p50 {median(p50s):.1f} ms; last trial p99 by kind: "
        + ", ".join(f"{k} {v:.1f}" for k, v in kinds.items()),
    )
    total_ms = sum(cpu_ms.values())
    ctx.report.add(
        SECTION,
        "CPU per callback: gunicorn workers + their PostgreSQL backends + the"
        " load generator",
        total_ms,
        "ms",
        key="callbacks:cpu",
        note=", ".join(f"{k} {v:.2f} ms" for k, v in cpu_ms.items())
        + f"; what {cores} idle cores could then serve:"
        f" {cores * 1000 / total_ms:,.0f}/s (independent of the load average)",
    )
