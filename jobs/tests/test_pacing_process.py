"""Acceptance: four real ``run_call_worker --dialer twilio`` subprocesses
share one Twilio account's limits (jobs/pacing.py) against the loopback fake
Twilio, whose signed callbacks reach the live server.

The rate is checked on the slots the database granted (kept on each
attempt), not on wall-clock timings; the concurrency cap on the calls the
fake itself has queued, ringing or in progress when each new one arrives.
"""

from __future__ import annotations

import itertools
import signal
import time

import pytest

from batches.tests.factories import BatchFactory
from jobs.models import CallAttempt, Job, JobStatus
from jobs.tests.factories import JobFactory
from jobs.tests.fake_twilio import ANSWERED, RUNNING, FakeTwilio
from jobs.tests.test_twilio import AUTH, SID
from jobs.tests.test_twilio_process import twilio_env
from jobs.tests.test_worker_process import start_worker, wait_until

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
    pytest.mark.postgres_only,
]

__all__ = ["start_worker"]  # the fixture, shared
WORKERS = 4


@pytest.fixture
def fake(settings, live_server):
    settings.TWILIO_AUTH_TOKEN = AUTH  # the live server checks the signatures
    settings.PUBLIC_BASE_URL = live_server.url
    twilio = FakeTwilio(SID, AUTH).start()
    yield twilio
    twilio.stop()


def test_four_workers__slots_granted_by_the_database_keep_the_rate(
    live_server, fake, start_worker, account
):
    cps = 8
    fake.script = ANSWERED
    batch = BatchFactory(account=account)
    jobs = JobFactory.create_batch(32, batch=batch)
    env = {**twilio_env(fake, live_server.url), "TWILIO_CALLS_PER_SECOND": str(cps)}
    args = ("--dialer", "twilio", "--burst", "--concurrency", "8")

    workers = [
        start_worker(*args, "--worker-id", f"pace-{n}", **env) for n in range(WORKERS)
    ]
    for worker in workers:
        assert worker.wait() == 0, worker.output

    attempts = list(CallAttempt.objects.filter(job__batch=batch).order_by("slot_at"))
    slots = [attempt.slot_at for attempt in attempts]
    assert len(slots) == 32
    assert None not in slots
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(slots)]
    # 1/cps is the product's promise; the guard makes the slots a little wider.
    assert min(gaps) >= 1 / cps
    # The slots were shared: several processes took them, interleaved.
    assert len({attempt.worker_id for attempt in attempts}) > 1
    takers = [attempt.worker_id for attempt in attempts]
    assert sum(a != b for a, b in itertools.pairwise(takers)) > WORKERS
    called = sorted(params["To"][0] for params in fake.creates)
    assert called == sorted(job.phone_number for job in jobs)  # once each
    assert set(Job.objects.filter(batch=batch).values_list("status", flat=True)) == {
        JobStatus.COMPLETED
    }


def test_four_workers__never_more_calls_at_the_provider_than_the_cap(
    live_server, fake, start_worker, account
):
    """The fake holds every call until the test ends it. The test lets the
    account fill up, gives the workers time to (wrongly) place more, then
    ends the oldest call, and so on until every job is done."""
    cap, total = 3, 12
    batch = BatchFactory(account=account)
    jobs = JobFactory.create_batch(total, batch=batch)
    env = {
        **twilio_env(fake, live_server.url),
        "TWILIO_CALLS_PER_SECOND": "0",
        "TWILIO_MAX_CONCURRENT_CALLS": str(cap),
        "WORKER_POLL_SECONDS": "0.1",
    }
    workers = [
        start_worker(
            "--dialer", "twilio", "--concurrency", "4", "--worker-id", f"cap-{n}", **env
        )
        for n in range(WORKERS)
    ]
    ended = 0
    while ended < total:
        wait_until(
            lambda ended=ended: fake.running() >= min(cap, total - ended),
            workers[0],
            f"{cap} calls in progress ({ended} ended)",
        )
        # Room for a shared cap to be broken: four workers, each with room.
        time.sleep(0.5)
        with fake.lock:
            sid = next(
                sid for sid, call in fake.calls.items() if call["status"] in RUNNING
            )
        fake.progress(sid, "in-progress", AnsweredBy="human")
        fake.progress(sid, "completed", CallDuration="10", AnsweredBy="human")
        ended += 1
    wait_until(
        lambda: (
            Job.objects.filter(batch=batch, status=JobStatus.COMPLETED).count() == total
        ),
        workers[0],
        "every job completed",
    )
    for worker in workers:
        worker.proc.send_signal(signal.SIGTERM)
    for worker in workers:
        assert worker.wait() == 0, worker.output

    assert max(fake.running_at_create) <= cap
    assert len(fake.running_at_create) == total
    called = sorted(params["To"][0] for params in fake.creates)
    assert called == sorted(job.phone_number for job in jobs)  # once each
    # A job the cap held back spent no attempt: one attempt per job.
    assert CallAttempt.objects.filter(job__batch=batch).count() == total
    assert set(Job.objects.filter(batch=batch).values_list("attempts", flat=True)) == {
        1
    }
