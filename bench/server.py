"""The API over loopback: a gunicorn subprocess running the project's WSGI app."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench.ours import Missing

ROOT = Path(__file__).resolve().parent.parent


def require_api() -> None:
    from django.urls import Resolver404, resolve

    try:
        resolve("/api/v1/batches/batch-x")
    except Resolver404 as exc:
        raise Missing("the API (/api/v1/batches/...) is not merged") from exc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The bench's own environment, with a throttle that never trips: every
    request still pays for the throttle's shared-cache write, but the bench
    measures the API, not the rate limit (one token sends thousands of
    requests a minute, far above the default API_THROTTLE_RATE)."""
    env = os.environ.copy()
    env.setdefault("API_THROTTLE_RATE", "1000000/min")
    env.update(extra or {})
    return env


class Server:
    """gunicorn with sync workers, as a deployment would run it.

    `own_session` starts it in a session of its own, as a service manager
    starts a service: where the kernel shares the CPU between sessions
    (autogroup) or services (cgroups), the web then gets its own share instead
    of competing process by process with the workers.

    `production_config` runs it with callcenter/gunicorn.conf.py, exactly as
    Procfile.production does (its worker count, 2 per core + 1, and its
    access log), bound to a loopback port; `env` is added to its
    environment.
    """

    def __init__(
        self,
        workers: int = 2,
        *,
        own_session: bool = False,
        port: int | None = None,
        production_config: bool = False,
        env: dict[str, str] | None = None,
    ):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        if production_config:
            args = ["--config", str(ROOT / "callcenter" / "gunicorn.conf.py")]
            env = {"GUNICORN_BIND": f"127.0.0.1:{self.port}", **(env or {})}
        else:
            args = [
                "callcenter.wsgi:application",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(workers),
                "--timeout",
                "300",
                "--log-level",
                "warning",
            ]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", *args],
            cwd=ROOT,
            env=_server_env(env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=own_session,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("gunicorn did not start")

    def warm(self, token: str, requests_count: int = 6) -> None:
        """Make every gunicorn worker load the app before anything is timed."""
        import requests

        for _ in range(requests_count):
            requests.get(
                f"{self.url}/api/v1/batches",
                headers={"Authorization": f"Token {token}"},
                timeout=120,
            )

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def api_token(username: str, account_slug: str) -> str:
    """A token through the project's own command, as an operator makes one.
    --rotate: keys are shown only when made, so a user left by an earlier run
    gets a new one."""
    out = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "create_api_token",
            username,
            "--account",
            account_slug,
            "--create-user",
            "--rotate",
        ],
        cwd=ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # The command prints only the key.
    key = out.strip().splitlines()[-1].strip() if out.strip() else ""
    if not re.fullmatch(r"\S{20,}", key):
        raise RuntimeError(f"no token in create_api_token output: {out!r}")
    return key
