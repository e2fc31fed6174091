"""The production process layout: health endpoints, gunicorn, WhiteNoise.

The end-to-end tests run the ``web:`` line of ``Procfile.production`` as it
is, a real gunicorn with ``callcenter/gunicorn.conf.py`` and the production
settings, on a loopback port, after a real ``collectstatic``.
"""

from __future__ import annotations

import gzip
import json
import os
import runpy
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client, override_settings
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
GUNICORN_CONF = ROOT / "callcenter" / "gunicorn.conf.py"
PROD_ENV = {
    "DJANGO_SECRET_KEY": "a-long-random-production-secret-" + "x" * 40,
    "DJANGO_ALLOWED_HOSTS": "calls.example.com",
    "DJANGO_BEHIND_TLS_PROXY": "true",
    "CACHE_BACKEND": "locmem",
}
METRICS_TOKEN = "scrape-secret-0123456789"
# What a TLS-terminating load balancer adds to a user's request.
PROXIED = {"Host": "calls.example.com", "X-Forwarded-Proto": "https"}


# --- /healthz and /readyz in process ------------------------------------------


@override_settings(
    ALLOWED_HOSTS=["calls.example.com"], SECURE_SSL_REDIRECT=True, DEBUG=False
)
def test_healthz__answers_a_plain_http_probe_to_the_instance_address():
    # No django_db mark: any database access would fail this test.
    response = Client().get("/healthz", HTTP_HOST="10.0.0.5:8000")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@override_settings(ALLOWED_HOSTS=["calls.example.com"], SECURE_SSL_REDIRECT=True)
def test_healthz__other_paths_still_get_the_host_check_and_redirect():
    assert Client().get("/healthz/x", HTTP_HOST="10.0.0.5").status_code == 400
    response = Client().get("/admin/", HTTP_HOST="calls.example.com")
    assert response.status_code == 301
    assert response["Location"].startswith("https://")


@pytest.mark.django_db
@override_settings(ALLOWED_HOSTS=["calls.example.com"], SECURE_SSL_REDIRECT=True)
def test_readyz__queries_the_database(django_assert_num_queries):
    with django_assert_num_queries(1):
        response = Client().get("/readyz", HTTP_HOST="10.0.0.5")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


# --- gunicorn.conf.py ---------------------------------------------------------


def load_conf(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, object]:
    for name in list(os.environ):
        if name.startswith("GUNICORN_") or name == "PORT":
            monkeypatch.delenv(name)
    # The file sets PROMETHEUS_MULTIPROC_DIR for gunicorn's workers; this
    # makes monkeypatch take it back out of this process afterwards.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/nonexistent/metrics")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(GUNICORN_CONF))


def test_gunicorn_conf__defaults(monkeypatch):
    conf = load_conf(monkeypatch)
    assert conf["workers"] == 2 * (os.cpu_count() or 1) + 1
    assert conf["bind"] == ["0.0.0.0:8000"]
    assert conf["accesslog"] == "-"
    assert conf["timeout"] == 30


def test_gunicorn_conf__environment_overrides(monkeypatch):
    conf = load_conf(
        monkeypatch,
        GUNICORN_WORKERS="7",
        PORT="9100",
        GUNICORN_TIMEOUT="120",
        GUNICORN_ACCESS_LOG="",
        GUNICORN_MAX_REQUESTS="1000",
    )
    assert conf["workers"] == 7
    assert conf["bind"] == ["0.0.0.0:9100"]
    assert conf["timeout"] == 120
    assert conf["accesslog"] is None
    assert (conf["max_requests"], conf["max_requests_jitter"]) == (1000, 100)
    conf = load_conf(monkeypatch, GUNICORN_BIND="unix:/run/callcenter.sock", PORT="1")
    assert conf["bind"] == ["unix:/run/callcenter.sock"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GUNICORN_WORKERS", "0"),
        ("GUNICORN_TIMEOUT", "soon"),
        ("GUNICORN_LOG_LEVEL", "loud"),
    ],
)
def test_gunicorn_conf__bad_value_names_the_variable(monkeypatch, name, value):
    with pytest.raises(ImproperlyConfigured, match=name):
        load_conf(monkeypatch, **{name: value})


# --- the web: line of Procfile.production, for real ---------------------------


def procfile_web_command() -> list[str]:
    for line in (ROOT / "Procfile.production").read_text().splitlines():
        if line.startswith("web:"):
            return shlex.split(line.removeprefix("web:"))
    raise AssertionError("Procfile.production has no web: line")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fetch(url: str, headers: dict[str, str] | None = None):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "DATABASE_URL", "GUNICORN_", "CACHE_"))
    }
    env.update(PROD_ENV)
    env.update(extra)
    env["DJANGO_SETTINGS_MODULE"] = "callcenter.settings"
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return env


@pytest.fixture(scope="module")
def static_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """collectstatic with the production settings, as the deploy docs say."""
    root = tmp_path_factory.mktemp("static")
    result = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput"],
        cwd=ROOT,
        env=child_env(
            {
                "DJANGO_STATIC_ROOT": str(root),
                "DATABASE_URL": "postgres://postgres@127.0.0.1:1/none",
            }
        ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return root


@pytest.fixture
def gunicorn(static_root: Path, tmp_path: Path) -> Iterator:
    """Start the Procfile's web command; yields start(database_url) -> base URL."""
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []

    def start(database_url: str) -> str:
        port = free_port()
        log = tmp_path / f"gunicorn-{port}.log"
        logs.append(log)
        proc = subprocess.Popen(
            procfile_web_command(),
            cwd=ROOT,
            env=child_env(
                {
                    "DATABASE_URL": database_url,
                    "DJANGO_STATIC_ROOT": str(static_root),
                    "GUNICORN_BIND": f"127.0.0.1:{port}",
                    "GUNICORN_WORKERS": "2",
                    "GUNICORN_GRACEFUL_TIMEOUT": "5",
                    "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / f"metrics-{port}"),
                    "METRICS_TOKEN": METRICS_TOKEN,
                }
            ),
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        procs.append(proc)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return base
            except OSError:
                if time.monotonic() > deadline:
                    msg = "gunicorn did not listen:\n" + log.read_text()
                    raise AssertionError(msg) from None
                time.sleep(0.1)

    start.logs = logs  # type: ignore[attr-defined]
    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def database_url() -> str:
    return os.environ.get(
        "DATABASE_URL", "postgres://postgres@127.0.0.1:5432/callcenter"
    )


@pytest.mark.slow
def test_production_web__health_ready_and_static_files_under_gunicorn(
    gunicorn, static_root, tmp_path
):
    base = gunicorn(database_url())

    # Probes: plain HTTP, addressed to the instance, not to ALLOWED_HOSTS.
    status, _, body = fetch(f"{base}/healthz")
    assert (status, json.loads(body)) == (200, {"status": "ok"})
    status, _, body = fetch(f"{base}/readyz")
    assert (status, json.loads(body)) == (200, {"status": "ok", "database": "ok"})

    # Pages name the hashed files that collectstatic made, and WhiteNoise
    # serves them compressed and cacheable forever.
    manifest = json.loads((static_root / "staticfiles.json").read_text())
    hashed = manifest["paths"]["admin/css/base.css"]
    assert hashed != "admin/css/base.css"
    status, _, body = fetch(f"{base}/admin/login/", PROXIED)
    assert status == 200
    assert f"/static/{hashed}".encode() in body
    status, headers, body = fetch(
        f"{base}/static/{hashed}", {**PROXIED, "Accept-Encoding": "gzip"}
    )
    assert status == 200
    assert headers["Content-Encoding"] == "gzip"
    assert "immutable" in headers["Cache-Control"]
    original = (static_root / hashed).read_bytes()
    assert gzip.decompress(body) == original

    # Prometheus, in multiprocess mode: each gunicorn worker counts in files
    # of its own, and /metrics adds them up.
    status, _, body = fetch(
        f"{base}/metrics", {"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    assert status == 200
    families = {f.name for f in text_string_to_metric_families(body.decode())}
    assert {"callcenter_jobs_claimed", "callcenter_claim_seconds"} <= families
    metrics_dir = next(tmp_path.glob("metrics-*"))
    pids = {p.stem.rsplit("_", 1)[1] for p in metrics_dir.glob("counter_*.db")}
    assert len(pids) == 2, sorted(metrics_dir.iterdir())

    # The access log, one line per request.
    log = gunicorn.logs[0].read_text()
    assert '"GET /healthz HTTP/1.1" 200' in log
    assert f'"GET /static/{hashed} HTTP/1.1" 200' in log
    assert "duration_ms=" in log


@pytest.mark.slow
def test_production_web__readyz_is_503_while_the_database_is_unreachable(
    gunicorn,
):
    # A port nobody listens on: connections are refused, as when the
    # database is down. /healthz still answers: the process is alive.
    base = gunicorn(f"postgres://postgres@127.0.0.1:{free_port()}/callcenter")
    status, _, body = fetch(f"{base}/readyz")
    assert status == 503
    assert json.loads(body) == {
        "status": "unavailable",
        "reason": "database unreachable",
        "error": "OperationalError",
    }
    status, _, body = fetch(f"{base}/healthz")
    assert (status, json.loads(body)) == (200, {"status": "ok"})
    assert "health.database_unreachable" in gunicorn.logs[0].read_text()
