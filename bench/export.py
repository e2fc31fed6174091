"""7. Results export: GET /api/v1/batches/{id}/results.csv and .jsonl of one
batch of 1,000,000 jobs (20,000 with --quick; BENCH_EXPORT_ROWS overrides),
read over loopback from one gunicorn worker. The figures are rows per second
end to end, and the worker's RSS, read from /proc every 0.1 s: it must stay
flat (the end within 10% of the point where a tenth of the file had arrived).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from django.db import connection

from bench import datagen, server
from bench.context import Context
from bench.memory import rss_kib

SECTION = "7 export"
TARGET_ROWS_PER_SECOND = 100_000


def _rows(ctx: Context) -> int:
    override = os.environ.get("BENCH_EXPORT_ROWS")
    if override:
        return int(override)
    return 20_000 if ctx.quick else 1_000_000


def _insert(account_id: int, batch_id: int, rows: int) -> None:
    # Finished calls with variables, an attempt log and an outcome: every
    # column of the export has something to format.
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO jobs_job (account_id, batch_id, phone_number, variables,
                status, priority, attempts, max_attempts, claimed_by, call_id,
                attempt_log, result, last_error, cancel_reason, created_at,
                updated_at, finished_at)
            SELECT %s, %s, '+1' || (2000000000 + g)::text,
                jsonb_build_object('first_name', 'Ana ' || g, 'plan', 'gold'),
                'completed', 0, 1, 3, '', '',
                jsonb_build_array(jsonb_build_object(
                    'attempt', 1, 'outcome', 'answered',
                    'started_at', to_json(now()) #>> '{}',
                    'ended_at', to_json(now()) #>> '{}',
                    'duration_seconds', 42.5)),
                '{"outcome": "answered"}'::jsonb, '', '', now(), now(), now()
            FROM generate_series(1, %s) AS g
            """,
            [account_id, batch_id, rows],
        )


def _worker_pid(master: int) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == master:
                return int(entry.name)
        time.sleep(0.1)
    raise RuntimeError("no gunicorn worker process found")


def _download(url: str, token: str, pid: int, rows: int) -> dict[str, object]:
    import requests

    samples: list[tuple[int, int]] = []  # (bytes so far, RSS KiB)
    received = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            kib = rss_kib(pid)
            if kib:
                samples.append((received[0], kib))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    lines = 0
    t0 = time.monotonic()
    with requests.get(
        url, headers={"Authorization": f"Token {token}"}, stream=True, timeout=600
    ) as response:
        response.raise_for_status()
        for chunk in response.iter_content(chunk_size=1 << 20):
            received[0] += len(chunk)
            lines += chunk.count(b"\n")
    seconds = time.monotonic() - t0
    done.set()
    sampler.join()
    total = received[0]
    early = next((k for b, k in samples if b >= total * 0.1), samples[-1][1])
    return {
        "seconds": seconds,
        "bytes": total,
        "lines": lines,
        "rows_per_second": rows / seconds,
        "rss_start_kib": early,
        "rss_end_kib": samples[-1][1],
        "rss_peak_kib": max(k for _, k in samples),
    }


def run(ctx: Context) -> None:
    server.require_api()
    rows = _rows(ctx)
    datagen.truncate_jobs()
    account = datagen.create_account("bench-export")
    (batch,) = datagen.create_batches(account, 1, active=False, prefix="export")
    _insert(account, batch, rows)
    datagen.vacuum_analyze()
    token = server.api_token("bench-export", "bench-export")
    with connection.cursor() as cursor:
        cursor.execute("SELECT batch_id FROM batches_batch WHERE id = %s", [batch])
        public_id = cursor.fetchone()[0]
    raw: dict[str, object] = {"rows": rows}
    with server.Server(workers=1) as srv:
        srv.warm(token, requests_count=2)
        pid = _worker_pid(srv.proc.pid)
        for fmt, header_lines in (("csv", 1), ("jsonl", 0)):
            url = f"{srv.url}/api/v1/batches/{public_id}/results.{fmt}"
            run_ = _download(url, token, pid, rows)
            raw[fmt] = run_
            growth = run_["rss_end_kib"] / run_["rss_start_kib"]  # type: ignore[operator]
            complete = run_["lines"] == rows + header_lines
            ctx.report.add(
                SECTION,
                f"results.{fmt}, {rows:,} jobs",
                run_["rows_per_second"],
                "rows/s",
                target=f">= {TARGET_ROWS_PER_SECOND:,} rows/s, RSS flat",
                passed=complete
                and run_["rows_per_second"] >= TARGET_ROWS_PER_SECOND  # type: ignore[operator]
                and growth <= 1.10,
                ratio=growth,
                note=f"{run_['bytes'] / 1e6:.0f} MB in {run_['seconds']:.1f} s;"
                f" worker RSS {run_['rss_start_kib'] / 1024:.0f} MiB at 10%,"
                f" {run_['rss_end_kib'] / 1024:.0f} MiB at the end"
                f" (peak {run_['rss_peak_kib'] / 1024:.0f} MiB)"
                + ("" if complete else f"; INCOMPLETE: {run_['lines']} lines"),
            )
    ctx.report.raw["export"] = raw
    datagen.truncate_jobs()
