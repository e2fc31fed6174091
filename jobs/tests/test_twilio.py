"""``--dialer twilio`` against a loopback fake of Twilio's Calls API, driven
by the real ``twilio`` client (TWILIO_API_BASE_URL), whose signed status
callbacks reach the app's live server."""

from __future__ import annotations

import threading
from urllib.parse import urlsplit

import pytest
from django.db.models import Sum

from accounts.models import CreditEntry
from batches.tests.factories import BatchFactory
from callcenter.actor import Actor
from jobs.dialers.twilio import TwilioDialer
from jobs.models import CallAttempt, Job, JobStatus
from jobs.services import job_cancel
from jobs.tests.factories import JobFactory
from jobs.tests.fake_twilio import ANSWERED, FakeTwilio, twilio_signature
from jobs.worker import CallWorker

pytestmark = pytest.mark.django_db(transaction=True)

SID = "AC" + "1" * 32
AUTH = "fake-auth-token"
FROM = "+14155550100"


@pytest.fixture
def fake():
    twilio = FakeTwilio(SID, AUTH).start()
    yield twilio
    twilio.stop()


@pytest.fixture
def twilio(settings, live_server, fake):
    settings.TWILIO_ACCOUNT_SID = SID
    settings.TWILIO_AUTH_TOKEN = AUTH
    settings.TWILIO_FROM_NUMBER = FROM
    settings.TWILIO_API_BASE_URL = fake.base_url
    settings.PUBLIC_BASE_URL = live_server.url
    settings.TWILIO_CALL_URL = "https://agent.example.com/voice.xml"
    settings.TWILIO_HTTP_TIMEOUT_SECONDS = 0.5
    settings.WORKER_RENEW_SECONDS = 0.05
    settings.CALL_COST_PER_CALL = 1
    settings.CALL_COST_PER_STARTED_MINUTE = 1
    return fake


def dialer() -> TwilioDialer:
    d = TwilioDialer.from_settings()
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


def test_twilio_worker__places_each_call_with_the_documented_parameters_and_the_callback_completes_it(  # noqa: E501
    twilio, account
):
    twilio.script = ANSWERED
    jobs = JobFactory.create_batch(3, batch=BatchFactory(account=account))

    worker = run_worker(concurrency=3)

    assert len(twilio.creates) == 3
    for params in twilio.creates:
        job = Job.objects.get(phone_number=params["To"][0])
        attempt = CallAttempt.objects.get(job=job)
        assert params["From"] == [FROM]
        assert params["Url"] == ["https://agent.example.com/voice.xml"]
        assert params["StatusCallback"] == [
            f"{twilio_live_url()}/api/v1/telephony/twilio/status/{attempt.token}"
        ]
        assert params["StatusCallbackEvent"] == [
            "initiated",
            "ringing",
            "answered",
            "completed",
        ]
        assert params["StatusCallbackMethod"] == ["POST"]
        assert params["MachineDetection"] == ["Enable"]
        assert params["Timeout"] == ["30"]
        assert params["TimeLimit"] == ["3600"]
    settled = CreditEntry.objects.filter(kind="settle")
    eventually(lambda: settled.count() == 3)
    for job in jobs:
        job.refresh_from_db()
        attempt = CallAttempt.objects.get(job=job)
        assert job.status == JobStatus.COMPLETED
        assert job.result["outcome"] == "answered"
        assert attempt.outcome == "answered"
        assert attempt.answered_by == "human"
        assert attempt.duration_seconds == 75
        assert attempt.answered_at is not None
        assert attempt.provider_status == "completed"
        assert [e["CallStatus"] for e in attempt.events] == [
            "initiated",
            "ringing",
            "in-progress",
            "completed",
        ]
        # CallDuration settles: 1 per call + 2 started minutes.
        assert attempt.cost == 3
        assert charged(job) == 3
    # Every request went to the fake: TWILIO_API_BASE_URL is honoured.
    assert all(path.startswith("/2010-04-01/") for _m, path in twilio.requests)
    assert worker.started == 3
    assert not [t for t in threading.enumerate() if t.name.startswith("call-")]


def twilio_live_url() -> str:
    from django.conf import settings

    return settings.PUBLIC_BASE_URL


def place_one(twilio, account, script=()):
    """A job dialled by a worker round; returns it, its attempt and call sid."""
    twilio.script = list(script)
    job = JobFactory(batch=BatchFactory(account=account))
    worker = CallWorker(dialer=dialer(), worker_id="w1", listen=False)
    worker.claim()
    assert worker.placer is not None
    worker.placer.shutdown(wait=True)
    worker.drain_inbox()
    worker.save_call_ids()
    [sid] = twilio.sids_to(job.phone_number)
    return job, CallAttempt.objects.get(job=job), sid


def test_status_callback__duplicates_and_late_events_change_nothing(twilio, account):
    job, attempt, sid = place_one(twilio, account)
    assert twilio.progress(sid, "ringing") == 200
    done = {"CallDuration": "30", "AnsweredBy": "human"}
    assert twilio.progress(sid, "completed", **done) == 200
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
    before = (job.updated_at, charged(job))

    # The same final callback again, then a ringing that arrives late.
    assert twilio.progress(sid, "completed", **done) == 200
    assert twilio.progress(sid, "ringing") == 200
    assert twilio.progress(sid, "busy") == 200

    job.refresh_from_db()
    attempt.refresh_from_db()
    assert (job.updated_at, charged(job)) == before
    assert job.status == JobStatus.COMPLETED
    assert len(job.attempt_log) == 1
    assert attempt.outcome == "answered"
    assert attempt.provider_status == "completed"
    assert [e["CallStatus"] for e in attempt.events] == [
        "ringing",
        "completed",
        "completed",
        "ringing",
        "busy",
    ]
    assert CreditEntry.objects.filter(job_pk=job.pk, kind="settle").count() == 1


def test_status_callback__out_of_order_progress_never_moves_back(twilio, account):
    _job, attempt, sid = place_one(twilio, account)
    twilio.progress(sid, "in-progress")
    twilio.progress(sid, "ringing")
    twilio.progress(sid, "initiated")
    attempt.refresh_from_db()
    assert attempt.provider_status == "in-progress"
    assert attempt.ended_at is None


@pytest.mark.parametrize(
    ("status", "extra", "outcome", "job_status"),
    [
        ("completed", {"AnsweredBy": "machine_end_beep"}, "voicemail", "completed"),
        ("completed", {"AnsweredBy": "fax"}, "voicemail", "completed"),
        ("completed", {"AnsweredBy": "unknown"}, "answered", "completed"),
        ("busy", {}, "busy", "scheduled"),
        ("no-answer", {}, "no_answer", "scheduled"),
        ("failed", {}, "failed", "failed"),
    ],
)
def test_status_callback__maps_twilio_results_to_outcomes(
    twilio, account, status, extra, outcome, job_status
):
    job, attempt, sid = place_one(twilio, account)
    twilio.progress(sid, status, CallDuration="12", **extra)
    job.refresh_from_db()
    attempt.refresh_from_db()
    assert attempt.outcome == outcome
    assert job.status == job_status


def test_status_callback__forged_or_missing_signature_is_403_and_changes_nothing(
    twilio, account, caplog
):
    job, attempt, sid = place_one(twilio, account)
    url = twilio.callback_urls[sid]
    params = twilio.callback_params(sid, "completed", CallDuration="60")
    forged = twilio_signature("not-the-token", url, params)

    assert twilio.send_callback(url, params, signature=forged) == 403
    assert twilio.send_callback(url, params, signature="") == 403
    # Signed for another URL (a Host header the app must not trust).
    other_url = url.replace(urlsplit(url).netloc, "callcenter.example.org")
    other = twilio_signature(AUTH, other_url, params)
    assert twilio.send_callback(url, params, signature=other) == 403

    job.refresh_from_db()
    attempt.refresh_from_db()
    assert job.status == JobStatus.IN_PROGRESS
    assert attempt.events == []
    assert "telephony.bad_signature" in [
        getattr(r, "action", "") for r in caplog.records
    ]


def test_status_callback__bad_input(twilio, account, client):
    job, _attempt, sid = place_one(twilio, account)
    url = twilio.callback_urls[sid]
    # No CallStatus: 400 in the API's error shape, naming the field.
    params = {"CallSid": sid, "AccountSid": SID}
    assert twilio.send_callback(url, params) == 400
    params = twilio.callback_params(sid, "completed", CallDuration="soon")
    assert twilio.send_callback(url, params) == 400
    # An attempt it does not know: acknowledged.
    unknown = url.rsplit("/", 1)[0] + "/" + "0" * 32
    params = twilio.callback_params(sid, "completed")
    assert twilio.send_callback(unknown, params) == 200
    path = url.removeprefix(twilio_live_url())
    assert client.get(path).status_code == 405
    response = client.post(path, data="{}", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    job.refresh_from_db()
    assert job.status == JobStatus.IN_PROGRESS


def test_create_timing_out_after_the_call_was_placed__no_second_call(twilio, account):
    twilio.create_faults = ["timeout"]
    twilio.script = ANSWERED
    job = JobFactory(batch=BatchFactory(account=account))

    run_worker()

    job.refresh_from_db()
    assert len(twilio.creates) == 1
    assert len(twilio.calls) == 1
    assert job.status == JobStatus.COMPLETED
    assert CallAttempt.objects.get(job=job).provider_call_id == next(iter(twilio.calls))


def test_create_answered_5xx_without_a_call__is_retried_after_the_lookup(
    twilio, account
):
    twilio.create_faults = [500]
    twilio.script = ANSWERED
    job = JobFactory(batch=BatchFactory(account=account))

    run_worker()

    job.refresh_from_db()
    assert len(twilio.creates) == 2
    assert len(twilio.calls) == 1
    assert ("GET", f"/2010-04-01/Accounts/{SID}/Calls.json") in twilio.requests
    assert job.status == JobStatus.COMPLETED


def test_create_throttled_429__backs_off_and_places_one_call(twilio, account):
    twilio.create_faults = [429, 429]
    twilio.script = ANSWERED
    job = JobFactory(batch=BatchFactory(account=account))

    run_worker()

    job.refresh_from_db()
    assert len(twilio.creates) == 3
    assert len(twilio.calls) == 1
    assert job.status == JobStatus.COMPLETED


def test_create_refused_for_an_invalid_number__fails_the_job_without_retry(
    twilio, account
):
    twilio.create_faults = [(400, 21211)]
    job = JobFactory(batch=BatchFactory(account=account), max_attempts=3)

    run_worker()

    job.refresh_from_db()
    assert len(twilio.creates) == 1
    assert job.status == JobStatus.FAILED
    assert "Twilio refused the number" in job.last_error
    assert "21211" in job.last_error
    assert CallAttempt.objects.get(job=job).outcome == "failed"


def test_cancel_while_ringing__hangs_up_with_status_canceled(twilio, account):
    job = JobFactory(batch=BatchFactory(account=account))
    worker = CallWorker(dialer=dialer(), worker_id="w1", listen=False, burst=True)
    worker.claim()
    worker.placer.shutdown(wait=True)  # placed
    worker.drain_inbox()
    worker.save_call_ids()
    [sid] = twilio.sids_to(job.phone_number)
    twilio.progress(sid, "initiated")
    twilio.progress(sid, "ringing")

    job_cancel(job=job, actor=Actor.system("tests"), reason="changed our mind")
    worker.placer = None  # the hang-up runs inline in this test
    worker.next_renew = 0
    worker.renew()

    assert [p["Status"] for s, p in twilio.updates if s == sid] == [["canceled"]]
    attempt = CallAttempt.objects.get(job=job)
    assert attempt.hangup_requested_at is not None
    assert attempt.hangup_reason
    assert not worker.calls
    # The fake sends the final "canceled": stored, the job stays cancelled.
    ended = CallAttempt.objects.filter(job=job, ended_at__isnull=False)
    eventually(ended.exists)
    attempt.refresh_from_db()
    assert attempt.provider_status == "canceled"
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
