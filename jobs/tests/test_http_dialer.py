"""``--dialer http`` against a loopback fake voice-agent platform that checks
our Standard Webhooks signature and Idempotency-Key with the off-the-shelf
library, and whose signed callbacks reach the app's live server."""

from __future__ import annotations

import base64
import json
import threading
import time
from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Sum
from django.test import Client
from standardwebhooks.webhooks import Webhook

from accounts.models import CreditEntry
from batches.tests.factories import BatchFactory
from callcenter import standard_webhooks
from callcenter.actor import Actor
from jobs.dialers.http import HttpDialer
from jobs.models import CallAttempt, DncEntry, Job, JobStatus
from jobs.reconcile import http_overdue_after, reconcile_http_attempts
from jobs.services import job_cancel
from jobs.tests.factories import JobFactory
from jobs.tests.fake_agent import ANSWERED, FakeAgentPlatform
from jobs.worker import CallWorker, database_now

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "whsec_" + base64.b64encode(b"fake-agent-platform-secret-32byt").decode()
CALLER_ID = "+14155550100"


@pytest.fixture
def fake():
    platform = FakeAgentPlatform(SECRET).start()
    yield platform
    platform.stop()


@pytest.fixture
def agent(settings, live_server, fake):
    settings.HTTP_DIALER_URL = f"{fake.base_url}/calls"
    settings.HTTP_DIALER_SECRET = SECRET
    settings.HTTP_DIALER_CALLER_ID = CALLER_ID
    settings.HTTP_DIALER_TIMEOUT_SECONDS = 0.5
    settings.PUBLIC_BASE_URL = live_server.url
    settings.WORKER_RENEW_SECONDS = 0.05
    settings.CALL_COST_PER_CALL = 1
    settings.CALL_COST_PER_STARTED_MINUTE = 1
    return fake


def dialer() -> HttpDialer:
    d = HttpDialer.from_settings()
    d.sleep = lambda _seconds: None  # the backoff, without waiting
    return d


def run_worker(**kwargs) -> CallWorker:
    worker = CallWorker(
        dialer=dialer(), worker_id="w1", burst=True, listen=False, **kwargs
    )
    worker.run()
    return worker


def eventually(check, *, tries: int = 400) -> None:
    """Wait for ``check()`` to hold: the live server's threads settle after
    their commit, so a finished worker may be ahead of them."""
    for _ in range(tries):
        if check():
            return
        threading.Event().wait(0.025)
    assert check()


def charged(job: Job) -> int:
    total = CreditEntry.objects.filter(job_pk=job.pk).aggregate(t=Sum("amount"))["t"]
    return -(total or 0)


def place_one(agent, account, **job_fields):
    """A job dialled by a worker round; returns it, its attempt id (token)."""
    job = JobFactory(batch=BatchFactory(account=account), **job_fields)
    worker = CallWorker(dialer=dialer(), worker_id="w1", listen=False)
    worker.claim()
    assert worker.placer is not None
    worker.placer.shutdown(wait=True)
    worker.drain_inbox()
    worker.save_call_ids()
    return job, agent.attempt_of(job.phone_number)


def test_http_worker__posts_the_documented_signed_request_and_callbacks_complete_it(
    agent, account
):
    agent.script = ANSWERED
    jobs = JobFactory.create_batch(
        3, batch=BatchFactory(account=account), variables={"name": "Ana"}
    )

    worker = run_worker(concurrency=3)

    # Every request passed the fake's checks (the standardwebhooks library's
    # verification, the Idempotency-Key): a refused one is answered 401.
    assert all(ok for _path, _headers, _body, ok in agent.requests)
    requests = agent.call_requests()
    assert len(requests) == 3
    assert len(agent.placed) == 3
    for headers, body in requests:
        job = Job.objects.get(phone_number=body["phone_number"])
        attempt = CallAttempt.objects.get(job=job)
        assert headers["idempotency-key"] == attempt.token
        assert headers["webhook-id"] == attempt.token
        assert headers["webhook-signature"].startswith("v1,")
        assert body == {
            "type": "call.requested",
            "attempt_id": attempt.token,
            "job_id": job.pk,
            "attempt": 1,
            "phone_number": job.phone_number,
            "caller_id": CALLER_ID,
            "variables": {"name": "Ana"},
            "callback_url": (
                f"{agent_public_url()}/api/v1/telephony/http/events/{attempt.token}"
            ),
            "max_duration_seconds": 3600,
        }
    settled = CreditEntry.objects.filter(kind="settle")
    eventually(lambda: settled.count() == 3)
    for job in jobs:
        job.refresh_from_db()
        attempt = CallAttempt.objects.get(job=job)
        assert job.status == JobStatus.COMPLETED
        assert job.result["outcome"] == "answered"
        assert job.result["details"]["data"] == {"summary": "renewed"}
        assert attempt.outcome == "answered"
        assert attempt.answered_by == "human"
        assert attempt.duration_seconds == 75
        assert attempt.answered_at is not None
        assert attempt.provider_call_id == agent.calls[attempt.token]["call_id"]
        assert [e["status"] for e in attempt.events] == [
            "queued",
            "ringing",
            "in-progress",
            "ended",
        ]
        assert all(e["webhook_id"].startswith("evt_") for e in attempt.events)
        assert attempt.cost == 3  # 1 per call + 2 started minutes
        assert charged(job) == 3
    assert worker.started == 3
    assert set(agent.callback_replies) == {200}


def agent_public_url() -> str:
    from django.conf import settings

    return settings.PUBLIC_BASE_URL


def test_callback__duplicates_and_late_events_change_nothing(agent, account):
    job, attempt_id = place_one(agent, account)
    assert agent.send(attempt_id, "ringing") == 200
    done = {"outcome": "answered", "duration_seconds": 30}
    assert agent.send(attempt_id, "ended", msg_id="evt_final", **done) == 200
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
    before = (job.updated_at, charged(job), job.attempt_log)

    # The platform re-delivers its final event (same webhook-id), then a
    # different end and a ringing arrive late.
    assert agent.send(attempt_id, "ended", msg_id="evt_final", **done) == 200
    assert agent.send(attempt_id, "ended", outcome="busy") == 200
    assert agent.send(attempt_id, "ringing") == 200

    job.refresh_from_db()
    attempt = CallAttempt.objects.get(token=attempt_id)
    assert (job.updated_at, charged(job), job.attempt_log) == before
    assert job.status == JobStatus.COMPLETED
    assert len(job.attempt_log) == 1
    assert attempt.outcome == "answered"
    assert attempt.duration_seconds == 30
    assert [e["status"] for e in attempt.events] == [
        "ringing",
        "ended",
        "ended",
        "ended",
        "ringing",
    ]
    assert CreditEntry.objects.filter(job_pk=job.pk, kind="settle").count() == 1


def test_callback__out_of_order_progress_never_moves_back_and_an_early_end_is_final(
    agent, account
):
    _job, attempt_id = place_one(agent, account)
    agent.send(attempt_id, "in-progress")
    agent.send(attempt_id, "ringing")
    agent.send(attempt_id, "queued")
    attempt = CallAttempt.objects.get(token=attempt_id)
    assert attempt.provider_status == "in-progress"
    assert attempt.ended_at is None

    # The end arrives before a ringing delivered late: the end stays.
    job2, second = place_one(agent, account)
    agent.send(second, "ended", outcome="no_answer")
    agent.send(second, "ringing")
    agent.send(second, "in-progress", answered_by="human")
    attempt = CallAttempt.objects.get(token=second)
    job2.refresh_from_db()
    assert attempt.outcome == "no_answer"
    assert attempt.provider_status == "ended"
    assert attempt.answered_at is None
    assert job2.status == JobStatus.SCHEDULED  # retried later, as no_answer


@pytest.mark.parametrize(
    ("fields", "outcome", "job_status"),
    [
        ({"outcome": "voicemail"}, "voicemail", "completed"),
        ({"outcome": "busy"}, "busy", "scheduled"),
        ({"outcome": "failed", "error": "carrier said no"}, "failed", "failed"),
        ({"outcome": "error", "never_connected": True}, "error", "scheduled"),
        ({"outcome": "error"}, "error", "failed"),  # may have connected
    ],
)
def test_callback__the_platforms_outcome_moves_the_job(
    agent, account, fields, outcome, job_status
):
    job, attempt_id = place_one(agent, account)
    assert agent.send(attempt_id, "ended", **fields) == 200
    job.refresh_from_db()
    assert CallAttempt.objects.get(token=attempt_id).outcome == outcome
    assert job.status == job_status


def test_callback__forged_tampered_or_replayed_is_403_and_changes_nothing(
    agent, account, caplog
):
    job, attempt_id = place_one(agent, account)
    body = agent.event_body(attempt_id, "ended", outcome="answered")
    forger = Webhook(base64.b64encode(b"not-the-secret-of-this-platform!").decode())
    tampered = agent.event_body(attempt_id, "ended", outcome="busy")
    signed = agent.signed(body)
    cases = {
        "forged": agent.signed(body, webhook=forger),
        "unsigned": {},
        "tampered": signed,  # sent with another body below
        "replayed": agent.signed(body, timestamp=time.time() - 301),
        "future": agent.signed(body, timestamp=time.time() + 301),
        "other id": {**signed, "webhook-id": "evt_other"},
        "garbage": {**signed, "webhook-signature": "v1,\xff, v1"},
    }
    for name, headers in cases.items():
        sent = tampered if name == "tampered" else body
        assert agent.send(attempt_id, "ended", body=sent, headers=headers) == 403, name

    job.refresh_from_db()
    attempt = CallAttempt.objects.get(token=attempt_id)
    assert job.status == JobStatus.IN_PROGRESS
    assert attempt.events == []
    assert attempt.ended_at is None
    refused = [
        r
        for r in caplog.records
        if getattr(r, "action", "") == "telephony.bad_signature"
    ]
    assert len(refused) == len(cases)
    # The genuine one still works afterwards.
    assert agent.send(attempt_id, "ended", body=body) == 200


def test_callback__bad_input_is_400_unknown_attempt_200_no_session_or_csrf(
    agent, account
):
    job, attempt_id = place_one(agent, account)

    def post(body: bytes, token: str = attempt_id) -> tuple[int, dict]:
        url = f"/api/v1/telephony/http/events/{token}"
        client = Client(enforce_csrf_checks=True)  # no session, no CSRF token
        response = client.post(
            url,
            data=body,
            content_type="application/json",
            # Our signer: the library's cannot sign a body that is not UTF-8.
            headers=standard_webhooks.sign_headers([SECRET], "evt_input", body),
        )
        return response.status_code, response.json()

    good = {"attempt_id": attempt_id, "status": "ended", "outcome": "answered"}
    bad = [
        (b"not json", None),
        (b"[1, 2]", None),
        (b"\xff\xfe{}", None),
        (b"[" * 5000 + b"]" * 5000, None),
        (json.dumps({"status": "ringin"}).encode(), "status"),
        (json.dumps({"call_id": "c1"}).encode(), "status"),
        (json.dumps({"status": "ended"}).encode(), "outcome"),
        (json.dumps({**good, "outcome": "great"}).encode(), "outcome"),
        (json.dumps({**good, "duration_seconds": "soon"}).encode(), "duration_seconds"),
        (json.dumps({**good, "duration_seconds": -1}).encode(), "duration_seconds"),
        (b'{"status": "ended", "outcome": "answered", "duration_seconds": NaN}', None),
        (json.dumps({**good, "opt_out": "yes"}).encode(), "opt_out"),
        (json.dumps({**good, "data": [1]}).encode(), "data"),
        (json.dumps({**good, "data": {"t": "x" * 9000}}).encode(), "data"),
        (json.dumps({**good, "attempt_id": "0" * 32}).encode(), "attempt_id"),
        (json.dumps({**good, "call_id": {"a": 1}}).encode(), "call_id"),
    ]
    for body, field in bad:
        status, answer = post(body)
        assert status == 400, body[:80]
        assert answer["error"]["code"] == "invalid"
        if field:
            assert field in answer["error"]["fields"], body[:80]
    job.refresh_from_db()
    assert job.status == JobStatus.IN_PROGRESS
    assert CallAttempt.objects.get(token=attempt_id).events == []

    # An attempt it does not know: logged and acknowledged.
    unknown = json.dumps({"status": "ended", "outcome": "answered"}).encode()
    assert post(unknown, token="0" * 32) == (200, {"status": "unknown"})
    # NUL characters and lone surrogates are stored without them, not a 500.
    odd = b'{"status": "ringing", "call_id": "c\\u0000", "note": "\\ud800"}'
    assert post(odd)[0] == 200
    assert (
        Client().get(f"/api/v1/telephony/http/events/{attempt_id}").status_code == 405
    )


def test_call_request_timing_out_after_the_platform_accepted_it__one_call(
    agent, account
):
    """The reply is lost after the platform placed the call: the retry
    carries the same Idempotency-Key, and the platform answers the call it
    has instead of placing a second one."""
    agent.faults = ["timeout"]
    agent.script = ANSWERED
    job = JobFactory(batch=BatchFactory(account=account))

    run_worker()

    requests = agent.call_requests()
    assert len(requests) == 2
    keys = {headers["idempotency-key"] for headers, _body in requests}
    ids = {headers["webhook-id"] for headers, _body in requests}
    attempt = CallAttempt.objects.get(job=job)
    assert keys == ids == {attempt.token}
    assert agent.placed == [attempt.token]  # one call
    eventually(lambda: Job.objects.get(pk=job.pk).status == JobStatus.COMPLETED)
    attempt.refresh_from_db()
    assert attempt.provider_call_id == agent.calls[attempt.token]["call_id"]


def test_call_request_answered_5xx_or_429__retried_with_the_same_key(agent, account):
    agent.faults = [503, 429]
    agent.script = ANSWERED
    job = JobFactory(batch=BatchFactory(account=account))

    run_worker()

    attempt = CallAttempt.objects.get(job=job)
    posts = [h for p, h, _b, _ok in agent.requests if p == "/calls"]
    assert [h["idempotency-key"] for h in posts] == [attempt.token] * 3
    assert agent.placed == [attempt.token]
    eventually(lambda: Job.objects.get(pk=job.pk).status == JobStatus.COMPLETED)


def test_call_request_never_confirmed__the_job_fails_and_is_not_dialled_again(
    agent, account, settings
):
    settings.HTTP_DIALER_ATTEMPTS = 2
    agent.faults = ["timeout", "timeout"]
    job = JobFactory(batch=BatchFactory(account=account), max_attempts=3)

    run_worker()

    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert "may have the call" in job.last_error
    assert len(agent.placed) == 1
    assert job.attempts == 1


def test_call_request_refused_422__fails_the_job_without_retry(agent, account):
    agent.faults = [422]
    job = JobFactory(batch=BatchFactory(account=account), max_attempts=3)

    run_worker()

    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert "refused the call" in job.last_error
    assert agent.placed == []


def test_call_request_refused_400__retried_later_as_never_connected(agent, account):
    agent.faults = [400]
    job = JobFactory(batch=BatchFactory(account=account), max_attempts=3)

    run_worker(once=True)

    job.refresh_from_db()
    assert job.status == JobStatus.SCHEDULED
    assert job.result["never_connected"] is True


def test_callback__an_opt_out_lists_the_number(agent, account):
    job, attempt_id = place_one(agent, account)
    assert agent.send(attempt_id, "ended", outcome="answered", opt_out=True) == 200
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
    assert DncEntry.objects.filter(
        account=account, phone_number=job.phone_number
    ).exists()


def test_cancel_during_a_call__the_platform_is_asked_to_hang_up(
    agent, account, settings
):
    settings.HTTP_DIALER_HANGUP_URL = f"{agent.base_url}/hangup"
    job = JobFactory(batch=BatchFactory(account=account))
    worker = CallWorker(dialer=dialer(), worker_id="w1", listen=False, burst=True)
    worker.claim()
    worker.placer.shutdown(wait=True)  # placed
    worker.drain_inbox()
    worker.save_call_ids()
    attempt_id = agent.attempt_of(job.phone_number)
    agent.send(attempt_id, "ringing")

    job_cancel(job=job, actor=Actor.system("tests"), reason="changed our mind")
    worker.placer = None  # the hang-up runs inline in this test
    worker.next_renew = 0
    worker.renew()

    assert [h["attempt_id"] for h in agent.hangups] == [attempt_id]
    hangup_headers = [h for p, h, _b, ok in agent.requests if p == "/hangup" and ok]
    assert hangup_headers[0]["idempotency-key"] == f"{attempt_id}-hangup"
    attempt = CallAttempt.objects.get(token=attempt_id)
    assert attempt.hangup_requested_at is not None
    # The platform's final event is stored; the job stays cancelled.
    eventually(
        CallAttempt.objects.filter(token=attempt_id, ended_at__isnull=False).exists
    )
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED


def test_reconcile__an_attempt_whose_last_callback_never_came_fails_its_job(
    agent, account
):
    job, attempt_id = place_one(agent, account)
    agent.send(attempt_id, "in-progress")

    # Attempts are stamped on the database's clock; so is "now" here.
    assert reconcile_http_attempts(now=database_now()) == {"resolved": 0}
    later = database_now() + http_overdue_after() + timedelta(seconds=1)
    assert reconcile_http_attempts(now=later) == {"resolved": 1}

    job.refresh_from_db()
    attempt = CallAttempt.objects.get(token=attempt_id)
    assert job.status == JobStatus.FAILED  # it may have connected
    assert attempt.outcome == "error"
    assert attempt.events[-1]["source"] == "reconciliation"
    # Its late callback is stored and changes nothing.
    assert agent.send(attempt_id, "ended", outcome="answered") == 200
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED


def test_http_dialer__settings_are_checked_at_start(settings):
    settings.HTTP_DIALER_URL = "https://agent.example.com/calls"
    settings.PUBLIC_BASE_URL = "https://callcenter.example.com"
    settings.HTTP_DIALER_SECRET = ""
    with pytest.raises(ImproperlyConfigured, match="HTTP_DIALER_SECRET"):
        HttpDialer.from_settings()
    for bad in ("s3cret", "whsec_@@@", f"{SECRET} whsec_"):
        settings.HTTP_DIALER_SECRET = bad
        with pytest.raises(ImproperlyConfigured, match="whsec_"):
            HttpDialer.from_settings()


def test_secret_rotation__requests_signed_with_both_callbacks_accepted_under_either(
    agent, account, settings
):
    """HTTP_DIALER_SECRET="<new> <old>": a platform still on the old secret,
    and one already on the new, both verify our request and are heard."""
    new = standard_webhooks.generate_secret()
    settings.HTTP_DIALER_SECRET = f"{new} {SECRET}"
    job, attempt_id = place_one(agent, account)  # the fake knows the old one
    [(headers, _body)] = agent.call_requests()
    assert len(headers["webhook-signature"].split(" ")) == 2
    raw = next(b for p, _h, b, _ok in agent.requests if p == "/calls")
    Webhook(new).verify(raw, headers)

    assert agent.send(attempt_id, "ringing") == 200  # signed with the old
    body = agent.event_body(attempt_id, "ended", outcome="answered")
    signed_new = agent.signed(body, webhook=Webhook(new))
    assert agent.send(attempt_id, "ended", body=body, headers=signed_new) == 200
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED

    settings.HTTP_DIALER_SECRET = new  # the old one dropped
    assert agent.send(attempt_id, "ringing") == 403


def test_batch_cancel__the_platform_hangs_up_the_ringing_call_not_the_answered_one(
    agent, account, settings
):
    """The HTTP platform cannot be asked whether a call was answered: the
    attempt's events say, and an answered call is left to finish."""
    from batches.services import batch_cancel
    from jobs.telephony import ANSWERED as LEFT
    from jobs.telephony import NOT_ANSWERED

    settings.HTTP_DIALER_HANGUP_URL = f"{agent.base_url}/hangup"
    batch = BatchFactory(account=account)
    ringing, answered = JobFactory.create_batch(2, batch=batch)
    worker = CallWorker(dialer=dialer(), worker_id="w1", listen=False, concurrency=2)
    worker.claim()
    worker.placer.shutdown(wait=True)  # placed
    worker.drain_inbox()
    worker.save_call_ids()
    ring_id = agent.attempt_of(ringing.phone_number)
    answer_id = agent.attempt_of(answered.phone_number)
    agent.send(ring_id, "ringing")
    agent.send(answer_id, "in-progress", answered_by="human")

    batch_cancel(batch=batch, actor=Actor.system("tests"))
    worker.placer = None  # the hang-ups run inline in this test
    worker.next_renew = 0
    worker.renew()

    assert [h["attempt_id"] for h in agent.hangups] == [ring_id]
    assert CallAttempt.objects.get(token=ring_id).hangup_reason == (
        f"batch cancelled; {NOT_ANSWERED}"
    )
    left = CallAttempt.objects.get(token=answer_id)
    assert left.hangup_requested_at is None
    assert left.hangup_reason == f"batch cancelled; {LEFT}"
