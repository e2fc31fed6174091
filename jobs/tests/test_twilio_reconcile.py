"""Reconciliation: a call whose final callback never came is looked up at
the (fake) provider and resolved through the callback path."""

from __future__ import annotations

from datetime import timedelta

import pytest

from jobs.models import CallAttempt, JobStatus
from jobs.reconcile import overdue_after, reconcile_attempts
from jobs.tests.test_twilio import dialer, fake, place_one, twilio  # noqa: F401
from jobs.worker import database_now

pytestmark = pytest.mark.django_db(transaction=True)


def later():
    # Attempts are stamped on the database's clock; so is "now" here.
    return database_now() + overdue_after() + timedelta(seconds=1)


def test_reconcile__a_missing_final_callback_is_resolved_from_the_provider(
    twilio,  # noqa: F811
    account,
):
    job, attempt, sid = place_one(twilio, account)
    twilio.progress(sid, "in-progress", AnsweredBy="machine_start")
    # The call ends at Twilio; its final callback is lost.
    twilio.calls[sid].update(status="completed", duration="42")

    assert reconcile_attempts(dialer=dialer(), now=database_now()) == {
        "resolved": 0,
        "running": 0,
        "not_found": 0,
    }  # not overdue yet
    counts = reconcile_attempts(dialer=dialer(), now=later())

    assert counts["resolved"] == 1
    job.refresh_from_db()
    attempt.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
    assert attempt.outcome == "voicemail"
    assert attempt.duration_seconds == 42
    assert attempt.events[-1]["source"] == "reconciliation"
    # Its late callback now is stored and changes nothing.
    twilio.progress(sid, "completed", CallDuration="42", AnsweredBy="human")
    attempt.refresh_from_db()
    assert attempt.outcome == "voicemail"


def test_reconcile__a_call_unknown_to_the_provider_never_connected_and_is_retried(
    twilio,  # noqa: F811
    account,
):
    job, attempt, sid = place_one(twilio, account)
    del twilio.calls[sid]

    counts = reconcile_attempts(dialer=dialer(), now=later())

    assert counts == {"resolved": 1, "running": 0, "not_found": 1}
    job.refresh_from_db()
    assert job.status == JobStatus.SCHEDULED  # retried, attempts left
    assert CallAttempt.objects.get(pk=attempt.pk).outcome == "error"


def test_reconcile__a_call_still_running_is_left_alone(twilio, account):  # noqa: F811
    job, attempt, sid = place_one(twilio, account)
    twilio.progress(sid, "in-progress", AnsweredBy="human")

    counts = reconcile_attempts(dialer=dialer(), now=later())

    assert counts == {"resolved": 0, "running": 1, "not_found": 0}
    job.refresh_from_db()
    assert job.status == JobStatus.IN_PROGRESS
    attempt.refresh_from_db()
    assert attempt.ended_at is None


def test_status_callback__a_nul_byte_or_huge_values_never_make_a_500(
    twilio,  # noqa: F811
    account,
):
    job, _attempt, sid = place_one(twilio, account)
    url = twilio.callback_urls[sid]
    params = twilio.callback_params(sid, "ringing")
    params["CallStatus"] = "ring\x00ing"
    params["Weird\x00Key"] = "x" * 100_000
    assert twilio.send_callback(url, params) == 200
    params = twilio.callback_params(sid, "completed", CallDuration="1e400")
    assert twilio.send_callback(url, params) == 400
    job.refresh_from_db()
    assert job.status == JobStatus.IN_PROGRESS
