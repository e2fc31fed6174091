"""A loopback fake of a voice-agent platform, for ``--dialer http`` tests.

It speaks the platform's side of docs/telephony.md#the-voice-agent-dialer:

* ``POST /calls`` places a call. Each request is checked as a platform
  would: its Standard Webhooks signature with the off-the-shelf
  ``standardwebhooks`` library (not our code), and its ``Idempotency-Key``,
  which must equal the ``attempt_id`` of the body and the ``webhook-id``. A
  request whose key it has seen gets the call already placed for that key:
  one call per key, however often the request comes;
* ``POST /hangup`` ends a call;
* ``send`` reports a call's progress or end to its ``callback_url``, signed
  with the same library, as the platform signs its callbacks.

Faults for a test to inject: ``faults`` (each ``/calls`` request takes the
next): an HTTP status answered without placing anything, or ``"timeout"``,
which places the call and then holds the reply until the client has given
up.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests
import time_machine
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from callcenter import standard_webhooks

# The library's own tolerance (five minutes).
TIMESTAMP_TOLERANCE = 5 * 60

ANSWERED: list[tuple[str, dict[str, Any]]] = [
    ("queued", {}),
    ("ringing", {}),
    ("in-progress", {"answered_by": "human"}),
    (
        "ended",
        {
            "outcome": "answered",
            "duration_seconds": 75,
            "answered_by": "human",
            "data": {"summary": "renewed"},
        },
    ),
]


class _EitherClockWebhook(Webhook):
    """The library's verification, its timestamp check made against either
    clock a caller may sign with: a worker subprocess keeps the machine's
    real clock while a session under TEST_CLOCK moves this process's (the
    library reads ``datetime.now()``, which the session's clock moves)."""

    def _Webhook__verify_timestamp(self, timestamp_header: str) -> datetime:
        try:
            stamp = int(timestamp_header)
        except ValueError:
            raise WebhookVerificationError("Invalid Signature Headers") from None
        clocks = [time.time()]
        if time_machine.escape_hatch.is_travelling():
            clocks.append(time_machine.escape_hatch.time.time())
        if not any(abs(now - stamp) <= TIMESTAMP_TOLERANCE for now in clocks):
            raise WebhookVerificationError("Message timestamp too old or too new")
        return datetime.fromtimestamp(stamp, UTC)


class FakeAgentPlatform:
    def __init__(self, secret: str) -> None:
        self.secret = secret
        # The reference library wants the spec's alphabet; ours reads both.
        self.webhook = _EitherClockWebhook(standard_webhooks.standard_secret(secret))
        self.lock = threading.Lock()
        # Every request received: (path, headers, body bytes, accepted?).
        self.requests: list[tuple[str, dict[str, str], bytes, bool]] = []
        # attempt id -> the call placed for it (one per idempotency key).
        self.calls: dict[str, dict[str, Any]] = {}
        self.placed: list[str] = []  # attempt ids, one entry per call placed
        self.hangups: list[dict[str, Any]] = []
        self.faults: list[Any] = []
        self.script: list[tuple[str, dict[str, Any]]] = []
        self.callback_replies: list[int] = []
        self.release = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # --- lifecycle --------------------------------------------------------
    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeAgentPlatform:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    # --- what a test reads ---------------------------------------------------
    def call_requests(self) -> list[tuple[dict[str, str], dict[str, Any]]]:
        """The accepted ``/calls`` requests: (headers, decoded body)."""
        with self.lock:
            return [
                (headers, json.loads(body))
                for path, headers, body, ok in self.requests
                if path == "/calls" and ok
            ]

    def attempt_of(self, number: str) -> str:
        [attempt_id] = [
            a for a, call in self.calls.items() if call["phone_number"] == number
        ]
        return attempt_id

    # --- callbacks -----------------------------------------------------------
    def signed(
        self,
        body: bytes,
        *,
        msg_id: str | None = None,
        timestamp: float | None = None,
        webhook: Webhook | None = None,
    ) -> dict[str, str]:
        msg_id = msg_id or f"evt_{uuid.uuid4().hex}"
        moment = datetime.fromtimestamp(
            time.time() if timestamp is None else timestamp, UTC
        )
        signature = (webhook or self.webhook).sign(msg_id, moment, body.decode())
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(moment.timestamp())),
            "webhook-signature": signature,
        }

    def event_body(self, attempt_id: str, status: str, **fields: Any) -> bytes:
        call = self.calls[attempt_id]
        event = {
            "type": "call.status",
            "attempt_id": attempt_id,
            "call_id": call["call_id"],
            "status": status,
            **fields,
        }
        return json.dumps(event).encode()

    def send(
        self,
        attempt_id: str,
        status: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        msg_id: str | None = None,
        **fields: Any,
    ) -> int:
        """Report ``status`` of the call to its callback URL, signed; the
        app's HTTP status."""
        if body is None:
            body = self.event_body(attempt_id, status, **fields)
        with self.lock:
            call = self.calls[attempt_id]
            if status != "ended" or call["status"] != "ended":
                call["status"] = status
        if headers is None:
            headers = self.signed(body, msg_id=msg_id)
        response = requests.post(
            call["callback_url"],
            data=body,
            headers={"Content-Type": "application/json", **headers},
            timeout=10,
        )
        with self.lock:
            self.callback_replies.append(response.status_code)
        return response.status_code

    def run_script(self, attempt_id: str, steps: Iterable[tuple[str, dict]]) -> None:
        for status, fields in steps:
            if self.calls[attempt_id]["status"] == "ended":
                return  # hung up meanwhile
            self.send(attempt_id, status, **fields)

    # --- HTTP ---------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                problem = self._check(headers, body)
                with fake.lock:
                    fake.requests.append((self.path, headers, body, not problem))
                if problem:
                    self._reply(401, {"error": problem})
                    return
                payload = json.loads(body)
                if self.path == "/calls":
                    self._call(payload)
                elif self.path == "/hangup":
                    self._hangup(payload)
                else:
                    self._reply(404, {"error": "not found"})

            def _check(self, headers: dict[str, str], body: bytes) -> str:
                """What a platform checks; "" when the request is good."""
                try:
                    payload = fake.webhook.verify(body, headers)
                except WebhookVerificationError as exc:
                    return f"signature: {exc}"
                key = headers.get("idempotency-key", "")
                if not key or key != headers.get("webhook-id"):
                    return "Idempotency-Key must equal webhook-id"
                if self.path == "/calls" and key != payload.get("attempt_id"):
                    return "Idempotency-Key must equal attempt_id"
                return ""

            def _call(self, payload: dict[str, Any]) -> None:
                attempt_id = payload["attempt_id"]
                with fake.lock:
                    fault = fake.faults.pop(0) if fake.faults else None
                    if isinstance(fault, int):
                        placed = None
                    else:
                        placed = fake.calls.get(attempt_id)
                        new = placed is None
                        if new:
                            placed = {
                                "call_id": f"call_{uuid.uuid4().hex[:16]}",
                                "status": "queued",
                                **payload,
                            }
                            fake.calls[attempt_id] = placed
                            fake.placed.append(attempt_id)
                if placed is None:
                    self._reply(fault, {"error": f"fake fault {fault}"})  # type: ignore[arg-type]
                    return
                if new and fake.script:
                    threading.Thread(
                        target=fake.run_script,
                        args=(attempt_id, list(fake.script)),
                        daemon=True,
                    ).start()
                if fault == "timeout":
                    # Placed; the reply comes only after the client gave up.
                    fake.release.wait(30)
                    return
                self._reply(
                    201 if new else 200,
                    {"call_id": placed["call_id"], "status": placed["status"]},
                )

            def _hangup(self, payload: dict[str, Any]) -> None:
                with fake.lock:
                    fake.hangups.append(payload)
                    call = fake.calls.get(payload.get("attempt_id", ""))
                self._reply(200 if call else 404, {})
                if call and call["status"] != "ended":
                    threading.Thread(
                        target=fake.send,
                        args=(payload["attempt_id"], "ended"),
                        kwargs={"outcome": "no_answer", "error": "hung up"},
                        daemon=True,
                    ).start()

        return Handler
