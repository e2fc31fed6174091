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


PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _pg_tool(name: str) -> str:
    path = PG_BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if not found:
        raise Unavailable(f"{name} is not installed")
    return found


class PrivateCluster:
    """A PostgreSQL cluster of the test's own: ``initdb`` into a temporary
    directory, its own port, trust authentication from ``trusted`` (CIDRs,
    besides loopback), listening on ``listen`` (``listen_addresses``).
    ``restart(mode)`` is ``pg_ctl restart -m mode``."""

    def __init__(
        self,
        listen: str = "127.0.0.1",
        trusted: tuple[str, ...] = (),
        conf: dict[str, str] | None = None,
    ):
        self.dir = _private_dir("callcenter-pg-")
        self.data = self.dir / "data"
        self.port = free_port()
        self.log = self.dir / "postgres.log"
        self.sudo = _as_service_user()
        try:
            self._run(
                _pg_tool("initdb"),
                "-D",
                str(self.data),
                "-U",
                SERVICE_USER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-instructions",
                "--no-sync",
            )
        except Unavailable:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        with (self.data / "postgresql.conf").open("a") as conf_file:
            conf_file.write(
                f"listen_addresses = '{listen}'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.dir}'\nmax_connections = 60\n"
                "shared_buffers = 32MB\nfsync = on\n"
            )
            for key, value in (conf or {}).items():
                conf_file.write(f"{key} = {value}\n")
        with (self.data / "pg_hba.conf").open("a") as hba:
            for cidr in trusted:
                hba.write(f"host all all {cidr} trust\n")
        self.start()

    def _run(self, *args: str) -> None:
        result = subprocess.run(
            [*self.sudo, *args], capture_output=True, text=True, timeout=60
        )
        if result.returncode:
            raise Unavailable(
                f"{Path(args[0]).name} failed ({result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}"
            )

    def _ctl(self, *args: str) -> None:
        self._run(
            _pg_tool("pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            "60",
            *args,
        )

    def start(self) -> None:
        self._ctl("start")

    def restart(self, mode: str) -> None:
        self._ctl("restart", "-m", mode)

    def stop(self) -> None:
        with contextlib.suppress(Unavailable, OSError, subprocess.TimeoutExpired):
            self._ctl("stop", "-m", "immediate")
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def output(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text()
        return ""

    def copy_database(self, source: dict, name: str) -> None:
        """Create ``name`` here as a copy (schema and rows) of the database
        Django's ``source`` settings describe."""
        subprocess.run(
            [
                _pg_tool("createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                SERVICE_USER,
                name,
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        dump = subprocess.Popen(
            [
                _pg_tool("pg_dump"),
                "-h",
                source["HOST"] or "127.0.0.1",
                "-p",
                str(source["PORT"] or 5432),
                "-U",
                source["USER"],
                "--no-owner",
                source["NAME"],
            ],
            stdout=subprocess.PIPE,
            env={**os.environ, "PGPASSWORD": source.get("PASSWORD") or ""},
        )
        subprocess.run(
            [
                "psql",
                "-q",
                "-X",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                SERVICE_USER,
                "-d",
                name,
            ],
            stdin=dump.stdout,
            check=True,
            capture_output=True,
            timeout=120,
        )
        assert dump.wait(60) == 0


@contextlib.contextmanager
def private_cluster(**kwargs) -> Iterator[PrivateCluster]:
    cluster = PrivateCluster(**kwargs)
    try:
        yield cluster
    finally:
        cluster.stop()
