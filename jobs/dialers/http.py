"""``--dialer http``: calls placed by a voice-agent platform over HTTP.

Each call is one JSON POST to HTTP_DIALER_URL (the attempt's id, the number,
the job's variables, the caller id and the callback URL), signed per
Standard Webhooks with HTTP_DIALER_SECRET and carrying an
``Idempotency-Key`` equal to the attempt's id. The platform reports the call's
progress and its end to the callback URL, signed the same way
(jobs/telephony_views.py), so the worker places the call and moves on.

The key makes a retry safe: a POST that timed out, or answered 5xx, 408,
409 or 429, is sent again with the same key and the same ``webhook-id``, and
the platform answers the call it already placed instead of placing a second
one. A 422 says the number cannot be called (the job fails, not retried);
any other 4xx that the platform placed nothing. When the tries run out after
a reply that may have been lost, the call may exist: the job fails rather
than risk a second call (docs/telephony.md#the-voice-agent-dialer).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.serializers.json import DjangoJSONEncoder

from callcenter import standard_webhooks
from jobs.dialers.base import (
    CallHandle,
    CallNotPlaced,
    CallRefused,
    Dialer,
)

if TYPE_CHECKING:
    from jobs.models import Job

logger = logging.getLogger(__name__)

CALLBACK_PATH = "/api/v1/telephony/http/events/"
USER_AGENT = "callcenter-dialer/1"
# Replies that are worth the same request again (same key: never a second
# call). 409: the platform is still working on the first request with that key.
RETRY_STATUSES = frozenset({408, 409, 425, 429})
MAX_BACKOFF = 30.0
# Errors raised before a byte of the request left: nothing can have been placed.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class PlacementUncertain(Exception):
    """The platform may have placed the call, and it could not be confirmed.
    Not a ``CallNotPlaced``: the worker will not dial the job again."""


class HttpCallHandle(CallHandle):
    """A call placed through the platform: its call id (if it gave one) and
    the attempt id, by which the platform knows it."""

    def __init__(self, call_id: str, attempt_id: str) -> None:
        super().__init__(call_id)
        self.attempt_id = attempt_id


def parse_secrets(raw: str) -> list[str]:
    """HTTP_DIALER_SECRET: one ``whsec_`` secret, or several separated by
    spaces while it is rotated. Raises ImproperlyConfigured on a bad one."""
    secrets = raw.split()
    for secret in secrets:
        if not secret.startswith(standard_webhooks.PREFIX):
            raise ImproperlyConfigured("HTTP_DIALER_SECRET must be whsec_ + base64")
        try:
            standard_webhooks.secret_key(secret)
        except ValueError:
            raise ImproperlyConfigured(
                "HTTP_DIALER_SECRET must be whsec_ + base64"
            ) from None
    return secrets


class HttpDialer(Dialer):
    name = "http"
    asynchronous = True

    def __init__(
        self,
        *,
        url: str,
        secrets: list[str],
        public_base_url: str,
        caller_id: str = "",
        hangup_url: str = "",
        timeout: float = 10.0,
        attempts: int = 5,
        max_call_seconds: int = 3600,
        backoff_seconds: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not secrets:
            raise ImproperlyConfigured("--dialer http needs HTTP_DIALER_SECRET")
        self.url = url
        self.secrets = secrets
        self.public_base_url = public_base_url.rstrip("/")
        self.caller_id = caller_id
        self.hangup_url = hangup_url
        self.attempts = max(1, attempts)
        self.max_call_seconds = max_call_seconds
        self.backoff_seconds = backoff_seconds
        self.sleep = sleep
        # One client, shared by the worker's placing threads (httpx's pool
        # is thread-safe). No redirects: a signed request goes where it was
        # configured to go, or nowhere.
        self.client = httpx.Client(timeout=timeout, follow_redirects=False)

    @classmethod
    def from_settings(cls) -> HttpDialer:
        missing = [
            name
            for name in ("HTTP_DIALER_URL", "HTTP_DIALER_SECRET", "PUBLIC_BASE_URL")
            if not getattr(settings, name)
        ]
        if missing:
            raise ImproperlyConfigured(
                f"--dialer http needs {', '.join(missing)} (docs/telephony.md)"
            )
        from jobs import pacing

        dialer = cls(
            url=settings.HTTP_DIALER_URL,
            secrets=parse_secrets(settings.HTTP_DIALER_SECRET),
            public_base_url=settings.PUBLIC_BASE_URL,
            caller_id=settings.HTTP_DIALER_CALLER_ID,
            hangup_url=settings.HTTP_DIALER_HANGUP_URL,
            timeout=settings.HTTP_DIALER_TIMEOUT_SECONDS,
            attempts=settings.HTTP_DIALER_ATTEMPTS,
            max_call_seconds=settings.HTTP_DIALER_MAX_CALL_SECONDS,
        )
        if settings.HTTP_DIALER_CALLS_PER_SECOND or (
            settings.HTTP_DIALER_MAX_CONCURRENT_CALLS
        ):
            dialer.pacing = pacing.from_settings(
                key=f"http:{settings.HTTP_DIALER_URL}",
                dialer=cls.name,
                cps=settings.HTTP_DIALER_CALLS_PER_SECOND,
                max_concurrent=settings.HTTP_DIALER_MAX_CONCURRENT_CALLS,
            )
        return dialer

    def callback_url(self, token: str) -> str:
        return f"{self.public_base_url}{CALLBACK_PATH}{token}"

    def call_request(self, job: Job) -> dict[str, Any]:
        """The body of the call request (docs/telephony.md#the-call-request)."""
        return {
            "type": "call.requested",
            "attempt_id": job.attempt_token,
            "job_id": job.pk,
            "attempt": job.attempts,
            "phone_number": job.phone_number,
            "caller_id": self.caller_id or None,
            "variables": job.variables or {},
            "callback_url": self.callback_url(job.attempt_token),
            "max_duration_seconds": self.max_call_seconds,
        }

    def place_call(self, job: Job) -> CallHandle:
        if not job.attempt_token:
            raise CallNotPlaced("no call attempt: the job was not marked dialled")
        body = json.dumps(self.call_request(job), cls=DjangoJSONEncoder).encode()
        reply = self._post(
            self.url, body, key=job.attempt_token, job=job, action="call"
        )
        return HttpCallHandle(_call_id(reply), job.attempt_token)

    def _post(
        self, url: str, body: bytes, *, key: str, job: Job | None, action: str
    ) -> httpx.Response:
        """POST ``body`` signed, with ``key`` as both the Idempotency-Key and
        the webhook-id, retrying what is safe to retry; the 2xx reply."""
        uncertain = ""
        last = ""
        for n in range(self.attempts):
            if n:
                self.sleep(min(self.backoff_seconds * 2 ** (n - 1), MAX_BACKOFF))
            # Signed afresh for each try (a new timestamp), under the same id.
            headers = {
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                "Idempotency-Key": key,
                **standard_webhooks.sign_headers(self.secrets, key, body),
            }
            try:
                reply = self.client.post(url, content=body, headers=headers)
            except NOT_SENT as exc:
                last = f"{type(exc).__name__}: {exc}"
                self._log(
                    f"http_dialer.{action}_not_sent", job, error=last, tries=n + 1
                )
                continue
            except httpx.HTTPError as exc:
                # Sent, and the reply was lost or late: the platform may have
                # the call. The same key again gets that call, not a new one.
                last = uncertain = f"{type(exc).__name__}: {exc}"
                self._log(
                    f"http_dialer.{action}_uncertain", job, error=last, tries=n + 1
                )
                continue
            if reply.is_success:
                return reply
            last = f"HTTP {reply.status_code}: {reply.text[:200]}"
            if reply.status_code in RETRY_STATUSES or reply.status_code >= 500:
                if reply.status_code >= 500:
                    uncertain = last
                self._log(f"http_dialer.{action}_retry", job, error=last, tries=n + 1)
                self._wait_retry_after(reply)
                continue
            if reply.status_code == 422:
                raise CallRefused(f"The voice-agent platform refused the call: {last}")
            raise CallNotPlaced(f"The voice-agent platform refused the call: {last}")
        if uncertain:
            raise PlacementUncertain(
                f"The voice-agent platform may have the call, but did not "
                f"confirm it after {self.attempts} tries: {uncertain}"
            )
        raise CallNotPlaced(f"The voice-agent platform was not reached: {last}")

    def _wait_retry_after(self, reply: httpx.Response) -> None:
        raw = reply.headers.get("Retry-After", "")
        if raw.isdigit():
            self.sleep(min(float(raw), MAX_BACKOFF))

    def hangup(self, handle: CallHandle) -> None:
        """Ask the platform to end the call (HTTP_DIALER_HANGUP_URL); without
        that URL the call ends by itself, and its callback still comes."""
        attempt_id = getattr(handle, "attempt_id", "")
        if not (self.hangup_url and attempt_id):
            logger.info(
                "no hang-up URL: the platform ends the call itself",
                extra={"action": "http_dialer.hangup_unsupported"},
            )
            return
        body = json.dumps(
            {
                "type": "call.hangup",
                "attempt_id": attempt_id,
                "call_id": handle.call_id or None,
            }
        ).encode()
        self._post(
            self.hangup_url, body, key=f"{attempt_id}-hangup", job=None, action="hangup"
        )

    def close(self) -> None:
        self.client.close()

    def _log(self, action: str, job: Job | None, **fields: Any) -> None:
        logger.warning(
            action,
            extra={
                "action": action,
                "job_id": job.pk if job is not None else None,
                "dialer": self.name,
                **fields,
            },
        )


def _call_id(reply: httpx.Response) -> str:
    """The platform's id of the call, from a JSON reply's ``call_id``; "" if
    it gave none (the attempt id is enough to find the call)."""
    try:
        data = reply.json()
    except ValueError:
        return ""
    value = data.get("call_id") if isinstance(data, dict) else None
    return str(value)[:64] if isinstance(value, str | int) and value != "" else ""
