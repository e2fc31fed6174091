"""Real servers for tests: Debian's PgBouncer in transaction mode, and a
private PostgreSQL cluster (initdb into a temporary directory, its own
port) that a test may restart or cut off.

Both run as the ``postgres`` system user when the tests run as root
(neither PgBouncer nor PostgreSQL agrees to run as root), in a directory
that user owns. Each helper raises ``Unavailable`` with the reason when it
cannot start here; the fixtures turn that into a skip that names it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

PGBOUNCER = "/usr/sbin/pgbouncer"
SERVICE_USER = "postgres"


class Unavailable(Exception):
    """This machine cannot run the server (the message says why)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_service_user() -> list[str]:
    """The command prefix that runs a server as the service user (root
    only), or nothing."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        raise Unavailable(f"running as root and no {SERVICE_USER} user") from None
    return ["runuser", "-u", SERVICE_USER, "--"]


def _private_dir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        entry = pwd.getpwnam(SERVICE_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def wait_for_port(host: str, port: int, timeout: float, proc=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise Unavailable(f"the server exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), 0.5):
            return
        time.sleep(0.05)
    raise Unavailable(f"nothing listens on {host}:{port} after {timeout}s")


class PgBouncer:
    """Debian's pgbouncer on a free loopback port, pool_mode = transaction,
    in front of the PostgreSQL server at ``upstream_host:upstream_port``
    (every database, trust authentication)."""

    def __init__(self, upstream_host: str, upstream_port: int, pool_size: int = 20):
        if not os.access(PGBOUNCER, os.X_OK):
            raise Unavailable(
                f"{PGBOUNCER} is not installed (apt-get install pgbouncer)"
            )
        self.port = free_port()
        self.dir = _private_dir("callcenter-pgbouncer-")
        self.log = self.dir / "pgbouncer.log"
        (self.dir / "userlist.txt").write_text(f'"{SERVICE_USER}" ""\n')
        (self.dir / "pgbouncer.ini").write_text(
            f"""[databases]
* = host={upstream_host} port={upstream_port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = {self.dir}/userlist.txt
admin_users = {SERVICE_USER}
pool_mode = transaction
default_pool_size = {pool_size}
max_client_conn = 500
server_reset_query =
ignore_startup_parameters = extra_float_digits,options
logfile = {self.log}
pidfile = {self.dir}/pgbouncer.pid
"""
        )
        if os.geteuid() == 0:
            for name in ("userlist.txt", "pgbouncer.ini"):
                shutil.chown(self.dir / name, SERVICE_USER, SERVICE_USER)
        self.proc = subprocess.Popen(
            [*_as_service_user(), PGBOUNCER, str(self.dir / "pgbouncer.ini")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port("127.0.0.1", self.port, 10, self.proc)
        except Unavailable as exc:
            self.stop()
            raise Unavailable(
                f"pgbouncer did not start ({exc}): {self.output}"
            ) from None

    @property
    def output(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text()
        return ""

    def show(self, what: str) -> list[dict[str, str]]:
        """``SHOW <what>`` on the admin console, through psql (the console
        speaks only the simple query protocol)."""
        out = subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                SERVICE_USER,
                "-d",
                "pgbouncer",
                "-AF",
                "\t",
                "-c",
                f"SHOW {what}",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        header = out[0].split("\t")
        return [dict(zip(header, line.split("\t"), strict=True)) for line in out[1:-1]]

    def transactions(self, database: str) -> int:
        """Transactions pgbouncer has passed to ``database`` so far."""
        return sum(
            int(row["total_xact_count"])
            for row in self.show("STATS")
            if row["database"] == database
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def pgbouncer(upstream_host: str, upstream_port: int) -> Iterator[PgBouncer]:
    bouncer = PgBouncer(upstream_host, upstream_port)
    try:
        yield bouncer
    finally:
        bouncer.stop()
