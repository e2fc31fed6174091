"""Periodic tasks run once per period however many ``qcluster`` processes
serve the queue: two real clusters, on each broker, take the same due
schedules."""

from __future__ import annotations

import re
import signal
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import Schedule, Task

from callcenter.schedules import PREFIX, ensure_schedules
from callcenter.tests.qcluster import q_broker, start_qcluster
from jobs.models import Job, JobStatus
from jobs.tests.factories import JobFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

__all__ = ["q_broker"]  # a fixture

CREATED = re.compile(r"created task \S+ from schedule \[([^\]]+)\]")


def test_periodic_tasks__two_clusters_run_each_due_schedule_once(tmp_path, q_broker):
    ensure_schedules()
    ours = Schedule.objects.filter(name__startswith=PREFIX, cluster__isnull=True)
    names = set(ours.values_list("name", flat=True))
    assert "callcenter: recover expired leases" in names
    started = timezone.now()
    ours.update(next_run=started - timedelta(seconds=1))
    # Work for one of them: a job whose worker is gone.
    lost = JobFactory(
        status=JobStatus.IN_PROGRESS,
        claimed_by="gone:1",
        lease_expires_at=started - timedelta(minutes=5),
    )

    logs = [tmp_path / f"qcluster-{i}.log" for i in range(2)]
    procs = [
        start_qcluster(
            log, "callcenter.tests.settings_scheduler", Q_WORKERS="1", **q_broker
        )
        for log in logs
    ]
    try:
        deadline = time.monotonic() + 60
        ran = Task.objects.filter(group__in=names)
        # Both clusters have started their guard loop, whose first cycle
        # runs the scheduler, and every due schedule has run somewhere.
        while not (
            all("running." in log.read_text() for log in logs)
            and ran.count() >= len(names)
        ):
            for proc, log in zip(procs, logs, strict=True):
                assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, [log.read_text() for log in logs]
            time.sleep(0.2)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=60)

    # A cluster stops at the end of a guard cycle, so each one's scheduler
    # has run by now: every due schedule made one task, in one cluster.
    output = [log.read_text() for log in logs]
    created = Counter(name for text in output for name in CREATED.findall(text))
    assert created == dict.fromkeys(names, 1), output
    assert sorted(ran.values_list("group", flat=True)) == sorted(names)
    assert all(ran.values_list("success", flat=True)), output
    for schedule in ours:
        assert schedule.next_run > started
    # The maintenance really ran: the lost job was recovered.
    assert Job.objects.get(pk=lost.pk).status != JobStatus.IN_PROGRESS
