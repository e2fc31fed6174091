"""Acceptance: a real ``run_call_worker --dialer twilio`` subprocess drains a
batch through the loopback fake Twilio, whose signed callbacks reach the
live server, with a pause in the middle."""

from __future__ import annotations

import pytest

from batches.services import batch_pause, batch_resume
from batches.tests.factories import BatchFactory
from callcenter.actor import Actor
from jobs.models import CallAttempt, Job, JobStatus
from jobs.tests.factories import JobFactory
from jobs.tests.fake_twilio import ANSWERED, FakeTwilio
from jobs.tests.test_twilio import AUTH, FROM, SID
from jobs.tests.test_worker_process import start_worker, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

__all__ = ["start_worker"]  # the fixture, shared
ACTOR = Actor.system("tests")


@pytest.fixture
def fake():
    twilio = FakeTwilio(SID, AUTH).start()
    yield twilio
    twilio.stop()


def twilio_env(fake: FakeTwilio, live_url: str) -> dict[str, str]:
    return {
        "DJANGO_DEBUG": "true",  # PUBLIC_BASE_URL is the live server's http
        "TWILIO_ACCOUNT_SID": SID,
        "TWILIO_AUTH_TOKEN": AUTH,
        "TWILIO_FROM_NUMBER": FROM,
        "TWILIO_API_BASE_URL": fake.base_url,
        "TWILIO_CALL_URL": "https://agent.example.com/voice.xml",
        "PUBLIC_BASE_URL": live_url,
        "WORKER_RENEW_SECONDS": "0.1",
        "CALL_DIALER": "twilio",
    }


def test_run_call_worker_twilio__pause_mid_batch_then_resume_calls_each_number_once(
    settings, live_server, fake, start_worker, account
):
    settings.TWILIO_AUTH_TOKEN = AUTH  # the live server checks the signatures
    settings.PUBLIC_BASE_URL = live_server.url
    batch = BatchFactory(account=account)
    jobs = JobFactory.create_batch(8, batch=batch)
    env = twilio_env(fake, live_server.url)

    worker = start_worker("--dialer", "twilio", "--burst", "--concurrency", "1", **env)
    # Answer the calls one by one; pause while the third one rings.
    for n in range(1, 4):
        wait_until(lambda n=n: len(fake.creates) == n, worker, f"create {n}")
        sid = list(fake.calls)[-1]
        fake.progress(sid, "initiated")
        fake.progress(sid, "ringing")
        if n == 3:
            batch_pause(batch=batch, actor=ACTOR)
            created_at_pause = len(fake.creates)
        fake.progress(sid, "in-progress", AnsweredBy="human")
        fake.progress(sid, "completed", CallDuration="20", AnsweredBy="human")

    assert worker.wait() == 0, worker.output
    # No create after the pause returned; the call that was ringing finished.
    assert len(fake.creates) == created_at_pause == 3
    statuses = sorted(Job.objects.filter(batch=batch).values_list("status", flat=True))
    assert statuses == ["completed"] * 3 + ["pending"] * 5

    batch_resume(batch=batch, actor=ACTOR)
    fake.script = ANSWERED
    again = start_worker("--dialer", "twilio", "--burst", "--concurrency", "4", **env)
    assert again.wait() == 0, again.output

    called = [params["To"][0] for params in fake.creates]
    assert sorted(called) == sorted(job.phone_number for job in jobs)  # once each
    assert set(Job.objects.filter(batch=batch).values_list("status", flat=True)) == {
        JobStatus.COMPLETED
    }
    assert CallAttempt.objects.filter(job__batch=batch, outcome="answered").count() == 8
