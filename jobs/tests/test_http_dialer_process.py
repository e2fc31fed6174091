"""Acceptance: a real ``run_call_worker --dialer http`` subprocess drains a
batch through the loopback fake voice-agent platform, whose signed callbacks
reach the live server, with a pause in the middle."""

from __future__ import annotations

import pytest

from batches.services import batch_pause, batch_resume
from batches.tests.factories import BatchFactory
from callcenter.actor import Actor
from jobs.models import CallAttempt, Job, JobStatus
from jobs.tests.factories import JobFactory
from jobs.tests.fake_agent import ANSWERED, FakeAgentPlatform
from jobs.tests.test_http_dialer import SECRET
from jobs.tests.test_worker_process import start_worker, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

__all__ = ["start_worker"]  # the fixture, shared
ACTOR = Actor.system("tests")


@pytest.fixture
def fake():
    platform = FakeAgentPlatform(SECRET).start()
    yield platform
    platform.stop()


def agent_env(fake: FakeAgentPlatform, live_url: str) -> dict[str, str]:
    return {
        "DJANGO_DEBUG": "true",  # PUBLIC_BASE_URL is the live server's http
        "HTTP_DIALER_URL": f"{fake.base_url}/calls",
        "HTTP_DIALER_SECRET": SECRET,
        "HTTP_DIALER_CALLER_ID": "+14155550100",
        "PUBLIC_BASE_URL": live_url,
        "WORKER_RENEW_SECONDS": "0.1",
        "CALL_DIALER": "http",
    }


def test_run_call_worker_http__pause_mid_batch_then_resume_calls_each_number_once(
    settings, live_server, fake, start_worker, account
):
    settings.HTTP_DIALER_SECRET = SECRET  # the live server checks the signatures
    settings.PUBLIC_BASE_URL = live_server.url
    batch = BatchFactory(account=account)
    jobs = JobFactory.create_batch(8, batch=batch)
    env = agent_env(fake, live_server.url)

    worker = start_worker("--dialer", "http", "--burst", "--concurrency", "1", **env)
    # The platform answers the calls one by one; pause while the third rings.
    for n in range(1, 4):
        wait_until(lambda n=n: len(fake.placed) == n, worker, f"call {n}")
        attempt_id = fake.placed[-1]
        assert fake.send(attempt_id, "queued") == 200
        assert fake.send(attempt_id, "ringing") == 200
        if n == 3:
            batch_pause(batch=batch, actor=ACTOR)
            posts_at_pause = len(fake.requests)
        assert fake.send(attempt_id, "in-progress", answered_by="human") == 200
        ended = {"outcome": "answered", "duration_seconds": 20}
        assert fake.send(attempt_id, "ended", **ended) == 200

    assert worker.wait() == 0, worker.output
    # No call request after the pause returned; the call that was ringing
    # finished.
    assert len(fake.requests) == posts_at_pause == 3
    assert len(fake.placed) == 3
    statuses = sorted(Job.objects.filter(batch=batch).values_list("status", flat=True))
    assert statuses == ["completed"] * 3 + ["pending"] * 5

    batch_resume(batch=batch, actor=ACTOR)
    fake.script = ANSWERED
    again = start_worker("--dialer", "http", "--burst", "--concurrency", "4", **env)
    assert again.wait() == 0, again.output

    # Every request passed the platform's checks, and each number was called
    # exactly once.
    assert all(ok for _path, _headers, _body, ok in fake.requests)
    called = [fake.calls[attempt_id]["phone_number"] for attempt_id in fake.placed]
    assert sorted(called) == sorted(job.phone_number for job in jobs)
    assert set(Job.objects.filter(batch=batch).values_list("status", flat=True)) == {
        JobStatus.COMPLETED
    }
    assert CallAttempt.objects.filter(job__batch=batch, outcome="answered").count() == 8
