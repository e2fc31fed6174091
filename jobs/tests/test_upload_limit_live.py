"""The upload limit against a real web process: gunicorn, as deployed, whose
memory is read from /proc while a client sends it a 60 MB CSV body."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from accounts.tokens import api_token_create
from batches.tests.factories import BatchFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

BODY_BYTES = 60 * 1024 * 1024


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status_field(pid: int, name: str) -> int:
    """A /proc/<pid>/status memory figure, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {name} for process {pid}")


def _only_child(pid: int, timeout: float = 30) -> int:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = children.read_text().split()
        if found:
            return int(found[0])
        time.sleep(0.1)
    raise AssertionError("gunicorn started no worker")


@pytest.fixture
def web(tmp_path):
    """One gunicorn sync worker serving the test database."""
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    port = _free_port()
    log = tmp_path / "gunicorn.log"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "callcenter.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--timeout",
            "120",
        ],
        cwd=settings.BASE_DIR,
        env={
            **os.environ,
            "DATABASE_URL": f"postgres://{auth}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "DJANGO_SETTINGS_MODULE": "callcenter.settings_test",
            "IMPORT_MAX_BYTES": str(50 * 1024 * 1024),
        },
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError(log.read_text()) from None
                time.sleep(0.1)
        yield port, _only_child(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _request(port: int, head: str, body_bytes: int = 0) -> tuple[int, dict]:
    """Send a request whose body (CSV rows of 5,000 bytes) streams from a
    thread while the answer is read, as a client that does not wait for the
    whole upload would: the server may answer, and close, before the end."""
    row = b"+14155550100," + b"x" * 4986 + b"\n"
    sock = socket.create_connection(("127.0.0.1", port), timeout=120)

    def send() -> None:
        try:
            sock.sendall(head.encode())
            sent = 0
            while sent < body_bytes:
                piece = row * 13  # 65,000 bytes
                piece = piece[: body_bytes - sent]
                sock.sendall(piece)
                sent += len(piece)
        except OSError:
            pass  # the server answered and closed: the rest is not wanted

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except ConnectionResetError:
        pass
    sender.join(timeout=60)
    sock.close()
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line, "no answer from the server"
    _headers, _, payload = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), json.loads(payload or b"{}")


def test_batch_jobs_import__60_mb_csv_body_is_413_without_the_body_in_memory(
    member, web
):
    port, worker_pid = web
    token = api_token_create(user=member)
    batch = BatchFactory(account=member.membership.account)
    auth = f"Authorization: Token {token}\r\nHost: 127.0.0.1\r\n"
    status, _ = _request(
        port, f"GET /api/v1/batches HTTP/1.1\r\n{auth}Connection: close\r\n\r\n"
    )
    assert status == 200  # the app is loaded: what follows is the upload's
    peak_before = _status_field(worker_pid, "VmHWM")

    status, payload = _request(
        port,
        f"POST /api/v1/batches/{batch.batch_id}/jobs HTTP/1.1\r\n{auth}"
        f"Content-Type: text/csv\r\nContent-Length: {BODY_BYTES}\r\n"
        "Connection: close\r\n\r\nphone_number,note\n",
        BODY_BYTES - len("phone_number,note\n"),
    )

    assert status == 413
    assert payload["error"]["code"] == "too_large"
    grown_kib = _status_field(worker_pid, "VmHWM") - peak_before
    # Loose: the body is 61,440 KiB; holding it once would pass half of it.
    assert grown_kib < BODY_BYTES // 1024 // 2, f"peak RSS grew by {grown_kib} KiB"
    assert not batch.jobs.exists()
