"""Where the bench's backends wait: pg_stat_activity sampled every 10 ms.

A cheap profile of the server side of a measurement: the share of samples in
which an active backend was on CPU (no wait event), waiting for a lock
(Lock:transactionid, Lock:tuple), for a buffer or WAL (LWLock:*, IO:*), and
so on. The sampler's own backend and `exclude` pids are left out; with
`only`, just those pids are sampled. "Client:ClientRead" is a backend idle
inside a request, waiting for its client (here: for the client process to get
the CPU and send the next statement).
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import psycopg

SAMPLE_SQL = """
SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU')
FROM pg_stat_activity
WHERE datname = current_database() AND state = 'active'
  AND pid <> pg_backend_pid() AND NOT (pid = ANY(%(exclude)s))
  AND (cardinality(%(only)s::int[]) = 0 OR pid = ANY(%(only)s))
  AND backend_type = 'client backend'
"""

# Client backends of this database other than the caller's.
BACKENDS_SQL = """
SELECT pid FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND backend_type = 'client backend'
"""


def backends(url: str) -> list[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        return [pid for (pid,) in conn.execute(BACKENDS_SQL).fetchall()]


class WaitSampler(threading.Thread):
    def __init__(
        self,
        url: str,
        exclude: list[int] | None = None,
        every: float = 0.01,
        only: list[int] | None = None,
    ):
        super().__init__(daemon=True, name="wait-sampler")
        self.url = url
        self.exclude = exclude or []
        self.only = only or []
        self.every = every
        self.counts: Counter[str] = Counter()
        self.samples = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stopped.is_set():
                rows = conn.execute(
                    SAMPLE_SQL, {"exclude": self.exclude, "only": self.only}
                ).fetchall()
                self.samples += 1
                self.counts.update(r[0] for r in rows)
                time.sleep(self.every)

    def stop(self) -> dict[str, float]:
        self.stopped.set()
        self.join(timeout=5)
        return self.shares()

    def shares(self) -> dict[str, float]:
        total = sum(self.counts.values()) or 1
        return {k: round(v / total, 3) for k, v in self.counts.most_common(8)}


def top(shares: dict[str, float], n: int = 3) -> str:
    return ", ".join(f"{k} {v:.0%}" for k, v in list(shares.items())[:n])
