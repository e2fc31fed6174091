"""gunicorn's configuration for the production web process.

``Procfile.production`` starts ``gunicorn --config callcenter/gunicorn.conf.py
callcenter.wsgi``. Every value below can be overridden from the environment;
the variables and their defaults are the table in docs/deploy.md. A bad value
stops gunicorn at start-up with an error naming the variable (the typed
readers of callcenter/env.py).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

# gunicorn loads this file by path; make the project importable for the
# readers whatever the current directory is.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from callcenter.env import env_choice, env_int, env_str


def default_workers() -> int:
    """Sync workers: two per CPU plus one, gunicorn's own rule of thumb.

    A request spends much of its time waiting on PostgreSQL, so a core can
    serve more than one worker. Each worker holds one database connection.
    """
    return 2 * (os.cpu_count() or 1) + 1


wsgi_app = "callcenter.wsgi:application"
bind = [env_str("GUNICORN_BIND") or f"0.0.0.0:{env_int('PORT', 8000, minimum=1)}"]
workers = env_int("GUNICORN_WORKERS", default_workers(), minimum=1)
# Sync workers: one request at a time each. Threads > 1 switch to gthread.
threads = env_int("GUNICORN_THREADS", 1, minimum=1)
# A request running longer than this is killed and its worker replaced. The
# largest request the API takes (a CSV import of API_IMPORT_MAX_ROWS rows)
# measured 1.8 s for 100,000 rows on an idle machine.
timeout = env_int("GUNICORN_TIMEOUT", 30, minimum=1)
# On SIGTERM, how long requests in flight may finish before workers are killed.
graceful_timeout = env_int("GUNICORN_GRACEFUL_TIMEOUT", 30, minimum=1)
# Seconds an idle client connection is kept open. Behind a load balancer
# that reuses connections, make it longer than the balancer's idle timeout.
keepalive = env_int("GUNICORN_KEEPALIVE", 5, minimum=0)
# Recycle a worker after this many requests (plus up to 10% jitter, so they
# do not all restart at once); 0 never recycles.
max_requests = env_int("GUNICORN_MAX_REQUESTS", 0, minimum=0)
max_requests_jitter = max_requests // 10
# Access log: "-" is standard output, an empty value turns it off. One line
# per request: client, request line, status, bytes, referer, user agent and
# the time taken in milliseconds.
accesslog = env_str("GUNICORN_ACCESS_LOG", "-") or None
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" duration_ms=%(M)s'
errorlog = "-"
loglevel = env_choice(
    "GUNICORN_LOG_LEVEL",
    "info",
    frozenset({"debug", "info", "warning", "error", "critical"}),
)
# Addresses whose X-Forwarded-* headers gunicorn trusts (the load balancer).
forwarded_allow_ips = env_str("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1")
# The workers' heartbeat files: in memory, so that a slow or full disk under
# /tmp cannot make the arbiter think a worker hangs.
worker_tmp_dir = (
    env_str("GUNICORN_WORKER_TMP_DIR", "/dev/shm" if os.path.isdir("/dev/shm") else "")
    or None
)
proc_name = "callcenter-web"


# --- Prometheus: multiprocess mode ------------------------------------------
# Each gunicorn worker counts in files under this directory, and /metrics
# adds them up. Set here, before any worker starts and imports the app; the
# call workers and the clusters, separate commands, keep their own counters.
# A directory of our own unless PROMETHEUS_MULTIPROC_DIR names one; emptied
# at start so that counters of a previous run are not added again.
METRICS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(
    prefix="callcenter-web-metrics-"
)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = METRICS_DIR


def on_starting(server: object) -> None:
    os.makedirs(METRICS_DIR, exist_ok=True)
    for name in os.listdir(METRICS_DIR):
        if name.endswith(".db"):
            os.remove(os.path.join(METRICS_DIR, name))


def child_exit(server: object, worker: object) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]
