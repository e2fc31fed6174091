"""The simulated dialer in ``callback`` mode: its calls end through the
provider-callback service (jobs/telephony.py), not in the worker, so the
asynchronous path is exercised without a provider."""

from __future__ import annotations

import threading

import pytest
from django.db.models import Sum

from accounts.models import CreditEntry
from batches.tests.factories import BatchFactory
from jobs.dialers.simulated import SimulatedDialer
from jobs.models import CallAttempt, Job, JobStatus
from jobs.tests.factories import JobFactory
from jobs.worker import CallWorker

pytestmark = pytest.mark.django_db(transaction=True)


def test_simulated_callback_mode__the_callbacks_complete_the_jobs_and_settle(
    account, settings
):
    settings.WORKER_RENEW_SECONDS = 0.05
    settings.CALL_COST_PER_CALL = 1
    settings.CALL_COST_PER_STARTED_MINUTE = 1
    batch = BatchFactory(account=account)
    jobs = JobFactory.create_batch(6, batch=batch)
    dialer = SimulatedDialer(
        call_seconds=(0.01, 0.05),
        outcomes={"answered": 1},
        seed=3,
        callbacks=True,
    )
    worker = CallWorker(
        dialer=dialer, worker_id="w1", listen=False, burst=True, concurrency=3
    )
    worker.run()

    assert worker.started == 6
    for job in jobs:
        job.refresh_from_db()
        assert job.status == JobStatus.COMPLETED
        attempt = CallAttempt.objects.get(job=job)
        assert attempt.outcome == "answered"
        assert attempt.events[0]["simulated"] is True
        assert attempt.cost == 2  # 1 per call + 1 started minute
    settled = CreditEntry.objects.filter(kind="settle")
    for _ in range(400):  # settled after each callback's commit
        if settled.count() == 6:
            break
        threading.Event().wait(0.025)
    assert settled.count() == 6
    total = CreditEntry.objects.filter(job_pk__in=[j.pk for j in jobs]).aggregate(
        t=Sum("amount")
    )["t"]
    assert total == -12
    assert batch.__class__.objects.get(pk=batch.pk).completed_at is not None
    assert not Job.objects.filter(status=JobStatus.IN_PROGRESS).exists()
