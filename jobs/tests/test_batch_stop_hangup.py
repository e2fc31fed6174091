"""Cancel and delete with real calls: the batch's calls still queued or
ringing are hung up, answered ones are left to finish, and the attempt
records which. The worker holding the calls is woken by the cancel's
notification, not left to its next lease renewal."""

from __future__ import annotations

import pytest

from batches.services import batch_cancel, batch_delete
from batches.tests.factories import BatchFactory
from callcenter.actor import Actor
from jobs.models import CallAttempt, Job, JobStatus
from jobs.telephony import ANSWERED, NOT_ANSWERED
from jobs.tests.factories import JobFactory
from jobs.tests.test_twilio import AUTH, dialer, fake, twilio  # noqa: F401
from jobs.tests.test_twilio_process import twilio_env
from jobs.tests.test_worker_process import start_worker, wait_until  # noqa: F401
from jobs.worker import CallWorker

pytestmark = pytest.mark.django_db(transaction=True)

ACTOR = Actor.system("tests")


def updates_of(fake, sid: str) -> list[list[str]]:  # noqa: F811
    return [params.get("Status", []) for s, params in fake.updates if s == sid]


def test_batch_cancel_seen_at_lease_renewal__ringing_call_hung_up_answered_one_left_to_finish(  # noqa: E501
    twilio,  # noqa: F811
    account,
):
    batch = BatchFactory(account=account)
    ringing, answered = JobFactory.create_batch(2, batch=batch)
    worker = CallWorker(dialer=dialer(), worker_id="w1", listen=False, concurrency=2)
    worker.claim()
    worker.placer.shutdown(wait=True)  # both placed
    worker.drain_inbox()
    worker.save_call_ids()
    [ring_sid] = twilio.sids_to(ringing.phone_number)
    [answer_sid] = twilio.sids_to(answered.phone_number)
    twilio.progress(ring_sid, "initiated")
    twilio.progress(ring_sid, "ringing")
    twilio.progress(answer_sid, "initiated")
    twilio.progress(answer_sid, "in-progress", AnsweredBy="human")

    batch_cancel(batch=batch, actor=ACTOR)
    worker.placer = None  # the hang-ups run inline in this test
    worker.next_renew = 0
    worker.renew()

    assert updates_of(twilio, ring_sid) == [["canceled"]]
    assert updates_of(twilio, answer_sid) == []
    hung = CallAttempt.objects.get(job=ringing)
    assert hung.hangup_requested_at is not None
    assert hung.hangup_reason == f"batch cancelled; {NOT_ANSWERED}"
    left = CallAttempt.objects.get(job=answered)
    assert left.hangup_requested_at is None
    assert left.hangup_reason == f"batch cancelled; {ANSWERED}"

    # The answered call ends by itself; its outcome is kept on the attempt.
    twilio.progress(answer_sid, "completed", CallDuration="30", AnsweredBy="human")
    left.refresh_from_db()
    assert (left.outcome, left.duration_seconds) == ("answered", 30)
    assert Job.objects.get(pk=answered.pk).status == JobStatus.CANCELLED


@pytest.mark.slow
@pytest.mark.parametrize("operation", ["cancel", "delete"])
def test_run_call_worker_twilio__cancel_or_delete_wakes_the_worker_to_hang_up_unanswered_calls(  # noqa: E501
    operation,
    settings,
    live_server,
    fake,  # noqa: F811
    start_worker,  # noqa: F811
    account,
):
    """The worker renews its leases once an hour here, so only the cancel's
    notification can explain a hang-up: the queued and the ringing call get
    Status=canceled, the answered one no request at all."""
    settings.TWILIO_AUTH_TOKEN = AUTH  # the live server checks the signatures
    settings.PUBLIC_BASE_URL = live_server.url
    batch = BatchFactory(account=account)
    queued, ringing, answered = JobFactory.create_batch(3, batch=batch)
    env = {
        **twilio_env(fake, live_server.url),
        "WORKER_RENEW_SECONDS": "3600",
        "JOB_LEASE_SECONDS": "36000",
    }
    worker = start_worker("--dialer", "twilio", "--concurrency", "3", **env)
    wait_until(lambda: len(fake.creates) == 3, worker, "three calls placed")
    [ring_sid] = fake.sids_to(ringing.phone_number)
    [answer_sid] = fake.sids_to(answered.phone_number)
    [queued_sid] = fake.sids_to(queued.phone_number)
    fake.progress(ring_sid, "initiated")
    fake.progress(ring_sid, "ringing")
    fake.progress(answer_sid, "initiated")
    fake.progress(answer_sid, "in-progress", AnsweredBy="human")

    if operation == "cancel":
        batch_cancel(batch=batch, actor=ACTOR)
    else:
        batch_delete(batch=batch, actor=ACTOR)

    attempts = CallAttempt.objects.filter(batch_pk=batch.pk)
    wait_until(
        lambda: attempts.exclude(hangup_reason="").count() == 3,
        worker,
        "the hang-ups recorded",
    )
    assert updates_of(fake, queued_sid) == [["canceled"]]
    assert updates_of(fake, ring_sid) == [["canceled"]]
    assert updates_of(fake, answer_sid) == []
    reasons = dict(attempts.values_list("job_id", "hangup_reason"))
    why = {"cancel": "batch cancelled", "delete": "batch deleted"}[operation]
    assert reasons == {
        queued.pk: f"{why}; {NOT_ANSWERED}",
        ringing.pk: f"{why}; {NOT_ANSWERED}",
        answered.pk: f"{why}; {ANSWERED}",
    }
    assert not attempts.filter(
        job=answered, hangup_requested_at__isnull=False
    ).exists()
    # The canceled calls' final callbacks end their attempts.
    wait_until(
        lambda: attempts.filter(ended_at__isnull=False).count() == 2,
        worker,
        "the canceled calls' final callbacks",
    )
