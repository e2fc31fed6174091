"""A loopback fake of Twilio's Calls API, for tests driven by the real
``twilio`` client (through TWILIO_API_BASE_URL).

It implements Calls create, fetch, update and list at Twilio's own paths
and in its JSON shapes, checks the client's Basic auth, and sends status
callbacks to the URL each call was created with, signed as Twilio signs
them: HMAC-SHA1, keyed by the auth token, of the URL followed by each POST
parameter's name and value in name order, base64-encoded, in
``X-Twilio-Signature``. The signature is computed here, not with the
library's validator, so the app's check is tested against an independent
implementation.

Faults for a test to inject: ``create_faults`` (each create takes the next:
an HTTP status, ``(status, code)``, or ``"timeout"``, which places the call
and then holds the reply until the client has given up).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

API = "/2010-04-01/Accounts/"
RUNNING = ("queued", "initiated", "ringing", "in-progress")


def twilio_signature(auth_token: str, url: str, params: dict[str, str]) -> str:
    data = url + "".join(f"{key}{params[key]}" for key in sorted(params))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def rfc2822(moment: datetime) -> str:
    return format_datetime(moment.astimezone(UTC), usegmt=False).replace(
        "-0000", "+0000"
    )


class FakeTwilio:
    def __init__(self, account_sid: str, auth_token: str) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.calls: dict[str, dict[str, Any]] = {}
        self.callback_urls: dict[str, str] = {}
        self.creates: list[dict[str, list[str]]] = []
        # When each create request arrived (time.time(), refused ones too:
        # they count against the rate), and for each call placed, how many
        # calls were then queued, ringing or in progress (the account's
        # concurrency, as the provider counts it).
        self.created_at: list[float] = []
        self.running_at_create: list[int] = []
        self.updates: list[tuple[str, dict[str, list[str]]]] = []
        self.requests: list[tuple[str, str]] = []
        self.create_faults: list[Any] = []
        # What each placed call does by itself, in order: statuses to report
        # (see ``progress``); empty: it stays queued until the test moves it.
        self.script: list[tuple[str, dict[str, str]]] = []
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.sequence: dict[str, itertools.count[int]] = {}
        self.callback_replies: list[int] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # --- lifecycle --------------------------------------------------------
    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeTwilio:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    # --- the calls ---------------------------------------------------------
    def _call_json(self, sid: str) -> dict[str, Any]:
        return dict(self.calls[sid])

    def _place(self, params: dict[str, list[str]]) -> str:
        sid = "CA" + uuid.uuid4().hex
        now = rfc2822(datetime.now(UTC))
        uri = f"{API}{self.account_sid}/Calls/{sid}.json"
        to = params["To"][0]
        self.calls[sid] = {
            "sid": sid,
            "date_created": now,
            "date_updated": now,
            "parent_call_sid": None,
            "account_sid": self.account_sid,
            "to": to,
            "to_formatted": to,
            "from": params["From"][0],
            "from_formatted": params["From"][0],
            "phone_number_sid": "PN" + "0" * 32,
            "status": "queued",
            "start_time": None,
            "end_time": None,
            "duration": None,
            "price": None,
            "price_unit": "USD",
            "direction": "outbound-api",
            "answered_by": None,
            "api_version": "2010-04-01",
            "forwarded_from": None,
            "group_sid": None,
            "caller_name": None,
            "queue_time": "0",
            "trunk_sid": None,
            "uri": uri,
            "subresource_uris": {
                "notifications": uri.replace(".json", "/Notifications.json"),
                "recordings": uri.replace(".json", "/Recordings.json"),
            },
        }
        self.callback_urls[sid] = params.get("StatusCallback", [""])[0]
        self.sequence[sid] = itertools.count()
        return sid

    def progress(self, sid: str, status: str, **extra: str) -> int:
        """Move the call to ``status`` and send its signed status callback;
        returns the app's HTTP status."""
        with self.lock:
            call = self.calls[sid]
            call["status"] = status
            if status == "in-progress":
                call["start_time"] = rfc2822(datetime.now(UTC))
            if status not in RUNNING:
                call["end_time"] = rfc2822(datetime.now(UTC))
                call["duration"] = extra.get("CallDuration", "0")
            if "AnsweredBy" in extra:
                call["answered_by"] = extra["AnsweredBy"]
            params = self.callback_params(sid, status, **extra)
        return self.send_callback(self.callback_urls[sid], params)

    def callback_params(self, sid: str, status: str, **extra: str) -> dict[str, str]:
        call = self.calls[sid]
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "CallSid": sid,
            "CallStatus": status,
            "Called": call["to"],
            "Caller": call["from"],
            "Direction": "outbound-api",
            "From": call["from"],
            "To": call["to"],
            "CallbackSource": "call-progress-events",
            "Timestamp": rfc2822(datetime.now(UTC)),
            "SequenceNumber": str(next(self.sequence[sid])),
            **extra,
        }
        if status not in RUNNING:
            params.setdefault("CallDuration", "0")
            seconds = params["CallDuration"]
            if seconds.isdigit():
                params.setdefault("Duration", str(-(-int(seconds) // 60)))
        return params

    def send_callback(
        self, url: str, params: dict[str, str], *, signature: str | None = None
    ) -> int:
        sig = (
            twilio_signature(self.auth_token, url, params)
            if signature is None
            else signature
        )
        headers = {"X-Twilio-Signature": sig} if sig else {}
        response = requests.post(url, data=params, headers=headers, timeout=10)
        with self.lock:
            self.callback_replies.append(response.status_code)
        return response.status_code

    def run_script(self, sid: str, steps: Iterable[tuple[str, dict[str, str]]]) -> None:
        for status, extra in steps:
            if self.calls[sid]["status"] not in RUNNING:
                return  # hung up meanwhile
            self.progress(sid, status, **extra)

    def running(self) -> int:
        """The calls queued, ringing or in progress now."""
        return sum(call["status"] in RUNNING for call in self.calls.values())

    def sids_to(self, number: str) -> list[str]:
        return [sid for sid, call in self.calls.items() if call["to"] == number]

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

            def _error(self, status: int, code: int, message: str) -> None:
                self._reply(
                    status,
                    {
                        "code": code,
                        "message": message,
                        "more_info": f"https://www.twilio.com/docs/errors/{code}",
                        "status": status,
                    },
                )

            def _authorized(self) -> bool:
                expected = base64.b64encode(
                    f"{fake.account_sid}:{fake.auth_token}".encode()
                ).decode()
                if self.headers.get("Authorization") != f"Basic {expected}":
                    self._error(401, 20003, "Authenticate")
                    return False
                return True

            def _route(self) -> tuple[str, dict[str, list[str]]]:
                parts = urlsplit(self.path)
                return parts.path, parse_qs(parts.query)

            def do_GET(self) -> None:
                path, query = self._route()
                fake.requests.append(("GET", path))
                if not self._authorized():
                    return
                base = f"{API}{fake.account_sid}/Calls"
                if path == f"{base}.json":
                    with fake.lock:
                        calls = [
                            fake._call_json(sid)
                            for sid in reversed(list(fake.calls))
                            if not query.get("To")
                            or fake.calls[sid]["to"] == query["To"][0]
                        ]
                    size = int(query.get("PageSize", ["50"])[0])
                    calls = calls[:size]
                    uri = f"{base}.json?{urlencode(query, doseq=True)}"
                    self._reply(
                        200,
                        {
                            "calls": calls,
                            "end": max(len(calls) - 1, 0),
                            "first_page_uri": uri,
                            "next_page_uri": None,
                            "page": 0,
                            "page_size": size,
                            "previous_page_uri": None,
                            "start": 0,
                            "uri": uri,
                        },
                    )
                    return
                sid = path.removeprefix(f"{base}/").removesuffix(".json")
                with fake.lock:
                    call = fake.calls.get(sid)
                    body = fake._call_json(sid) if call else None
                if body is None:
                    self._error(404, 20404, "The requested resource was not found")
                else:
                    self._reply(200, body)

            def do_POST(self) -> None:
                path, _query = self._route()
                fake.requests.append(("POST", path))
                length = int(self.headers.get("Content-Length") or 0)
                params = parse_qs(self.rfile.read(length).decode())
                if not self._authorized():
                    return
                base = f"{API}{fake.account_sid}/Calls"
                if path == f"{base}.json":
                    self._create(params)
                    return
                sid = path.removeprefix(f"{base}/").removesuffix(".json")
                fake.updates.append((sid, params))
                with fake.lock:
                    call = fake.calls.get(sid)
                    status = call["status"] if call else ""
                if call is None:
                    self._error(404, 20404, "The requested resource was not found")
                    return
                wanted = params.get("Status", [""])[0]
                final = ""
                if wanted == "canceled" and status in (
                    "queued",
                    "initiated",
                    "ringing",
                ):
                    final = "canceled"
                elif wanted == "completed" and status in RUNNING:
                    final = "completed" if status == "in-progress" else "canceled"
                with fake.lock:
                    body = fake._call_json(sid)
                    if final:
                        body["status"] = final
                self._reply(200, body)
                if final:
                    threading.Thread(
                        target=fake.progress, args=(sid, final), daemon=True
                    ).start()

            def _create(self, params: dict[str, list[str]]) -> None:
                with fake.lock:
                    fake.creates.append(params)
                    fake.created_at.append(time.time())
                    fault = fake.create_faults.pop(0) if fake.create_faults else None
                if isinstance(fault, int):
                    code = 20429 if fault == 429 else 20500
                    self._error(fault, code, f"fake fault {fault}")
                    return
                if isinstance(fault, tuple):
                    self._error(fault[0], fault[1], "The 'To' number is not valid.")
                    return
                for name in ("To", "From", "StatusCallback"):
                    if not params.get(name):
                        self._error(400, 21201, f"No '{name}' number is specified")
                        return
                with fake.lock:
                    sid = fake._place(params)
                    body = fake._call_json(sid)
                    fake.running_at_create.append(fake.running())
                if fake.script:
                    threading.Thread(
                        target=fake.run_script,
                        args=(sid, list(fake.script)),
                        daemon=True,
                    ).start()
                if fault == "timeout":
                    # Placed; the reply comes only after the client gave up.
                    fake.release.wait(30)
                    return
                self._reply(201, body)

        return Handler


ANSWERED = [
    ("initiated", {}),
    ("ringing", {}),
    ("in-progress", {"AnsweredBy": "human"}),
    ("completed", {"CallDuration": "75", "AnsweredBy": "human"}),
]
