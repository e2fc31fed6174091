"""``--dialer twilio``: real calls through Twilio's Calls API.

The official ``twilio`` client, pointed at TWILIO_API_BASE_URL for every
REST request. Calls end by Twilio's status callbacks, which carry the
attempt's fencing token in their URL (jobs/telephony_views.py), so the
worker places a call and moves on.

Twilio's ``calls.create`` is not idempotent. A create that times out or
answers 5xx may have placed the call, so it is never retried blindly: the
dialer first looks the call up (the attempt's own status callback may have
brought its call id already; otherwise the calls to that number created
since the attempt started that no other attempt owns). A 429 is retried
with backoff; a 4xx that says the number is invalid or unreachable fails
the job with the reason (docs/telephony.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from jobs.dialers.base import (
    CallHandle,
    CallNotPlaced,
    CallRefused,
    CallResult,
    CallStatus,
    Dialer,
    Outcome,
    Unanswered,
)

if TYPE_CHECKING:
    from jobs.models import Job

logger = logging.getLogger(__name__)

STATUS_EVENTS = ["initiated", "ringing", "answered", "completed"]
RUNNING = frozenset({"queued", "initiated", "ringing", "in-progress"})
UNANSWERED = frozenset({"queued", "initiated", "ringing"})
TERMINAL = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
# Twilio error codes that mean the number itself cannot be called.
INVALID_NUMBER_CODES = frozenset(
    {
        13223,
        13224,
        21210,
        21211,
        21214,
        21215,
        21216,
        21217,
        21219,
        21401,
        21407,
        21421,
        21612,
    }
)
TOO_MANY_REQUESTS = 20429
CALLBACK_PATH = "/api/v1/telephony/twilio/status/"
# Twilio's timestamps are to the second, and its clock is not ours.
LOOKUP_SKEW = timedelta(seconds=5)


def result_for(
    status: str, *, answered_by: str = "", duration: float = 0.0
) -> CallResult | None:
    """The outcome of a call that ended with Twilio's ``status``; None while
    it runs."""
    if status == "completed":
        machine = answered_by.startswith("machine") or answered_by == "fax"
        return CallResult(
            outcome=Outcome.VOICEMAIL if machine else Outcome.ANSWERED,
            duration_seconds=duration,
            details={"answered_by": answered_by} if answered_by else {},
        )
    if status == "busy":
        return CallResult(outcome=Outcome.BUSY, duration_seconds=duration)
    if status == "no-answer":
        return CallResult(outcome=Outcome.NO_ANSWER, duration_seconds=duration)
    if status == "failed":
        return CallResult(
            outcome=Outcome.FAILED, duration_seconds=duration, error="twilio: failed"
        )
    if status == "canceled":
        # Hung up before anyone answered (our own hang-up request).
        return CallResult(
            outcome=Outcome.NO_ANSWER,
            duration_seconds=duration,
            hung_up=True,
            error="twilio: canceled",
        )
    return None


class BaseUrlHttpClient(TwilioHttpClient):
    """The library's HTTP client with every Twilio origin replaced by
    TWILIO_API_BASE_URL: the domains build their own absolute URLs
    (api.twilio.com, regional and edge hosts), so the rewrite is here, where
    every request passes."""

    def __init__(self, base_url: str, *, timeout: float) -> None:
        super().__init__(timeout=timeout, pool_connections=True)
        self.base_url = base_url.rstrip("/")

    def rewrite(self, url: str) -> str:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if host == "twilio.com" or host.endswith(".twilio.com"):
            query = f"?{parts.query}" if parts.query else ""
            return f"{self.base_url}{parts.path}{query}"
        return url

    def request(  # type: ignore[override]
        self, method: str, url: str, *args: Any, **kwargs: Any
    ) -> Response:
        return super().request(method, self.rewrite(url), *args, **kwargs)


class TwilioDialer(Dialer):
    name = "twilio"
    asynchronous = True

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        from_number: str,
        public_base_url: str,
        api_base_url: str = "https://api.twilio.com",
        call_url: str = "",
        twiml: str = "",
        machine_detection: str = "Enable",
        ring_timeout: int = 30,
        time_limit: int = 3600,
        http_timeout: float = 10.0,
        create_attempts: int = 5,
        backoff_seconds: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not (call_url or twiml):
            raise ImproperlyConfigured("set TWILIO_CALL_URL or TWILIO_TWIML")
        self.account_sid = account_sid
        self.from_number = from_number
        self.public_base_url = public_base_url.rstrip("/")
        self.call_url = call_url
        self.twiml = twiml
        self.machine_detection = machine_detection
        self.ring_timeout = ring_timeout
        self.time_limit = time_limit
        self.create_attempts = max(1, create_attempts)
        self.backoff_seconds = backoff_seconds
        self.sleep = sleep
        self.http = BaseUrlHttpClient(api_base_url, timeout=http_timeout)
        self.client = Client(account_sid, auth_token, http_client=self.http)
        # Load the Calls API's modules now (tens of ms), not during the first
        # create, which a paced worker sends at its slot (jobs/pacing.py).
        _ = self.client.calls

    @classmethod
    def from_settings(cls) -> TwilioDialer:
        missing = [
            name
            for name in (
                "TWILIO_ACCOUNT_SID",
                "TWILIO_AUTH_TOKEN",
                "TWILIO_FROM_NUMBER",
                "PUBLIC_BASE_URL",
            )
            if not getattr(settings, name)
        ]
        if missing:
            raise ImproperlyConfigured(
                f"--dialer twilio needs {', '.join(missing)} (docs/telephony.md)"
            )
        from jobs import pacing

        dialer = cls(
            account_sid=settings.TWILIO_ACCOUNT_SID,
            auth_token=settings.TWILIO_AUTH_TOKEN,
            from_number=settings.TWILIO_FROM_NUMBER,
            public_base_url=settings.PUBLIC_BASE_URL,
            api_base_url=settings.TWILIO_API_BASE_URL,
            call_url=settings.TWILIO_CALL_URL,
            twiml=settings.TWILIO_TWIML,
            machine_detection=settings.TWILIO_MACHINE_DETECTION,
            ring_timeout=settings.TWILIO_RING_TIMEOUT_SECONDS,
            time_limit=settings.TWILIO_TIME_LIMIT_SECONDS,
            http_timeout=settings.TWILIO_HTTP_TIMEOUT_SECONDS,
        )
        # Twilio's limits are per account: every worker using this SID
        # shares them, through the database.
        dialer.pacing = pacing.from_settings(
            key=f"twilio:{settings.TWILIO_ACCOUNT_SID}",
            dialer=cls.name,
            cps=settings.TWILIO_CALLS_PER_SECOND,
            max_concurrent=settings.TWILIO_MAX_CONCURRENT_CALLS,
        )
        return dialer

    def callback_url(self, token: str) -> str:
        return f"{self.public_base_url}{CALLBACK_PATH}{token}"

    def create_params(self, job: Job) -> dict[str, Any]:
        params: dict[str, Any] = {
            "to": job.phone_number,
            "from_": self.from_number,
            "status_callback": self.callback_url(job.attempt_token),
            "status_callback_event": STATUS_EVENTS,
            "status_callback_method": "POST",
            "timeout": self.ring_timeout,
            "time_limit": self.time_limit,
        }
        if self.twiml:
            params["twiml"] = self.twiml
        else:
            params["url"] = self.call_url
        if self.machine_detection != "off":
            params["machine_detection"] = self.machine_detection
        return params

    def place_call(self, job: Job) -> CallHandle:
        if not job.attempt_token:
            raise CallNotPlaced("no call attempt: the job was not marked dialled")
        started = timezone.now() - LOOKUP_SKEW
        params = self.create_params(job)
        last = ""
        for n in range(self.create_attempts):
            if n:
                self.sleep(self.backoff_seconds * 2 ** (n - 1))
                self.wait_for_slot()
            try:
                call = self.client.calls.create(**params)
                return CallHandle(str(call.sid))
            except TwilioRestException as exc:
                last = f"{exc.status} {exc.code}: {exc.msg}"
                if exc.status == 429 or exc.code == TOO_MANY_REQUESTS:
                    self._log("twilio.throttled", job, error=last)
                    continue
                if 400 <= exc.status < 500:
                    if exc.code in INVALID_NUMBER_CODES:
                        raise CallRefused(
                            f"Twilio refused the number {job.phone_number}: {exc.msg} "
                            f"(error {exc.code})"
                        ) from exc
                    raise CallNotPlaced(f"Twilio refused the call: {last}") from exc
                # A 5xx: the call may have been placed.
            except requests.ConnectionError as exc:
                # Includes read timeouts' cousins; a connect timeout or a
                # refused connection sent nothing, but a lost reply may have.
                last = f"{type(exc).__name__}: {exc}"
                if isinstance(exc, requests.ConnectTimeout):
                    continue
            except requests.Timeout as exc:
                last = f"{type(exc).__name__}: {exc}"
            self._log("twilio.create_uncertain", job, error=last)
            found = self.find_call(job, since=started)
            if found:
                self._log("twilio.create_found", job, call_id=found)
                return CallHandle(found)
        raise CallNotPlaced(f"Twilio did not take the call: {last}")

    def wait_for_slot(self) -> None:
        """Before a create that retries one: a send permit of its own (the
        worker waited for the first create's, jobs/pacing.py), so retries
        count against the account's rate too."""
        if self.pacing is None or not self.pacing.paced:
            return
        from jobs import pacing

        self.sleep(pacing.send_permit(self.pacing).wait)

    def find_call(self, job: Job, *, since: Any) -> str:
        """The call this attempt placed, if the provider has one; "" if not.

        Raises when Twilio cannot be asked: the worker then fails the job
        rather than risk a second call.
        """
        from jobs.models import CallAttempt

        known = (
            CallAttempt.objects.filter(token=job.attempt_token)
            .values_list("provider_call_id", flat=True)
            .first()
        )
        if known:  # its own status callback (token in the URL) brought it
            return str(known)
        candidates = [
            call
            for call in self.client.calls.list(to=job.phone_number, limit=20)
            if call.date_created is None or call.date_created >= since
        ]
        owned = set(
            CallAttempt.objects.filter(
                provider_call_id__in=[str(c.sid) for c in candidates]
            )
            .exclude(token=job.attempt_token)
            .values_list("provider_call_id", flat=True)
        )
        mine = [str(c.sid) for c in candidates if str(c.sid) not in owned]
        return mine[0] if mine else ""

    def hangup(self, handle: CallHandle) -> None:
        """Status=canceled while the call is queued or ringing; completed
        once it is in progress. A call already over is left alone."""
        call = self.client.calls(handle.call_id).fetch()
        status = str(call.status or "")
        if status in UNANSWERED:
            self.client.calls(handle.call_id).update(status="canceled")
        elif status == "in-progress":
            self.client.calls(handle.call_id).update(status="completed")

    def cancel_unanswered(self, handle: CallHandle, *, answered: bool) -> str:
        """Status=canceled while the call is queued or ringing, on Twilio's
        word rather than the callbacks received so far. Twilio applies
        ``canceled`` only to a call not yet answered, so a call answered
        between the fetch and the update is left to finish: the update's
        reply says which."""
        status = str(self.client.calls(handle.call_id).fetch().status or "")
        if status in UNANSWERED:
            call = self.client.calls(handle.call_id).update(status="canceled")
            status = str(call.status or "")
            if status in UNANSWERED or status == "canceled":
                return Unanswered.HUNG_UP
        if status == "in-progress":
            return Unanswered.ANSWERED
        return Unanswered.ENDED

    def fetch(self, call_id: str) -> dict[str, str] | None:
        """The call as Twilio has it (status, answered_by, duration); None
        when Twilio has no record of it."""
        try:
            call = self.client.calls(call_id).fetch()
        except TwilioRestException as exc:
            if exc.status == 404:
                return None
            raise
        return {
            "status": str(call.status or ""),
            "answered_by": str(call.answered_by or ""),
            "duration": str(call.duration or "0"),
        }

    def call_status(self, call_id: str) -> str:
        try:
            call = self.client.calls(call_id).fetch()
        except TwilioRestException as exc:
            if exc.status == 404:
                return CallStatus.NEVER_CONNECTED
            raise
        status = str(call.status or "")
        if status in RUNNING:
            return CallStatus.RUNNING
        if status == "completed":
            return CallStatus.CONNECTED
        return CallStatus.NEVER_CONNECTED

    def _log(self, action: str, job: Job, **fields: Any) -> None:
        logger.warning(
            action,
            extra={"action": action, "job_id": job.pk, "dialer": self.name, **fields},
        )
