"""A staff change of an account's dialing rules holds for jobs already
queued: a real ``run_call_worker`` subprocess checks them at dial time."""

from __future__ import annotations

import pytest
from django.db.models import Sum

from accounts.models import CreditEntry
from accounts.services import account_set_dialing_rules
from batches.tests.factories import BatchFactory
from callcenter.actor import Actor
from jobs.imports import jobs_import, rows_from_json
from jobs.models import Job, JobEvent, JobStatus
from jobs.tests.test_worker_process import start_worker  # noqa: F401 (fixture)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

STAFF = Actor.system("staff in tests")


def test_run_call_worker__countries_removed_while_jobs_wait_are_not_dialled(
    account,
    start_worker,  # noqa: F811
):
    batch = BatchFactory(account=account)
    imported = jobs_import(
        batch=batch,
        rows=rows_from_json(
            [{"phone_number": "+14155550100"}, {"phone_number": "+34612345678"}]
        ),
        actor=STAFF,
    )
    assert imported.created == 2  # Spain was allowed at import
    account_set_dialing_rules(account=account, actor=STAFF, allowed_countries=["US"])

    worker = start_worker("--burst", "--worker-id=w-rules", SIMULATED_CALL_SECONDS="0")

    assert worker.wait() == 0, worker.output
    us = Job.objects.get(phone_number="+14155550100")
    spain = Job.objects.get(phone_number="+34612345678")
    assert us.status == JobStatus.COMPLETED
    assert spain.status == JobStatus.CANCELLED
    assert spain.cancel_reason.startswith("Not dialled: +34612345678: destination ES")
    assert spain.attempts == 0
    assert spain.attempt_log == []
    event = JobEvent.objects.get(job=spain)
    assert (event.action, event.source, event.actor_label) == (
        "refused",
        "worker",
        "w-rules",
    )
    # The call's reservation is given back: no cost for a call not placed.
    spent = CreditEntry.objects.filter(job_pk=spain.pk).aggregate(s=Sum("amount"))
    assert spent["s"] == 0
    assert "job.dial_refused" in worker.output
