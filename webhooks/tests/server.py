from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1 that answers with scripted statuses
    (the last one repeats) and records every request."""

    url: str
    statuses: list[int] = field(default_factory=lambda: [200])
    requests: list[Received] = field(default_factory=list)


@pytest.fixture
def receiver():
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            state.requests.append(Received(self.path, dict(self.headers), body))
            index = min(len(state.requests) - 1, len(state.statuses) - 1)
            status = state.statuses[index]
            payload = f"status {status}".encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format, *args):  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@dataclass
class RawServer:
    """A loopback TCP server that answers every connection with ``handle``
    (a function of the accepted socket) in a thread of its own."""

    port: int
    sent: list[int] = field(default_factory=list)
    heads: list[bytes] = field(default_factory=list)  # each request's head
    server_names: list[str | None] = field(default_factory=list)  # TLS SNI
    stop: threading.Event = field(default_factory=threading.Event)


def _read_request(conn) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        rest += chunk
    return head


@contextlib.contextmanager
def raw_server(handle, tls: ssl.SSLContext | None = None):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    state = RawServer(port=listener.getsockname()[1])
    if tls is not None:
        tls.sni_callback = lambda sock, name, ctx: state.server_names.append(name)

    def serve():
        while not state.stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            if state.stop.is_set():
                conn.close()
                return
            try:
                if tls is not None:
                    conn = tls.wrap_socket(conn, server_side=True)
                state.heads.append(_read_request(conn))
                handle(conn, state)
            except OSError:
                pass  # the client went away or refused our certificate
            finally:
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.stop.set()
        # A blocked accept() does not notice its socket closing: wake it.
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", state.port), timeout=1).close()
        listener.close()
        thread.join(timeout=30)


def ok(conn, state):
    conn.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")


@dataclass
class LocalCA:
    """A certificate authority made for one test, and a server certificate
    it signed for ``hooks.test`` only."""

    ca_file: str
    server_context: ssl.SSLContext


@pytest.fixture
def local_ca(tmp_path) -> LocalCA:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command makes the test certificates; not installed")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        str(tmp_path / "ca.key"),
        "-out",
        str(tmp_path / "ca.pem"),
        "-subj",
        "/CN=test CA",
        "-days",
        "1",
    )
    openssl(
        "req",
        *ec,
        "-keyout",
        str(tmp_path / "srv.key"),
        "-out",
        str(tmp_path / "srv.csr"),
        "-subj",
        "/CN=hooks.test",
    )
    (tmp_path / "san.cnf").write_text("subjectAltName=DNS:hooks.test\n")
    openssl(
        "x509",
        "-req",
        "-in",
        str(tmp_path / "srv.csr"),
        "-CA",
        str(tmp_path / "ca.pem"),
        "-CAkey",
        str(tmp_path / "ca.key"),
        "-CAcreateserial",
        "-out",
        str(tmp_path / "srv.pem"),
        "-days",
        "1",
        "-extfile",
        str(tmp_path / "san.cnf"),
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "srv.pem", tmp_path / "srv.key")
    return LocalCA(ca_file=str(tmp_path / "ca.pem"), server_context=context)
