"""Acceptance: the django-q2 cluster layout, with a real ``qcluster`` process
started exactly as the Procfile starts the webhooks one."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from django.conf import settings
from django.db import connection
from django_q.conf import Conf
from django_q.models import OrmQ
from django_q.tasks import async_task

from batches import services as batch_services
from batches.tests.factories import BatchFactory
from callcenter.actor import Actor
from webhooks.models import WebhookDelivery, WebhookEndpoint

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def start_qcluster(tmp_path, **env: str) -> tuple[subprocess.Popen, object]:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    log = tmp_path / "qcluster.log"
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=settings.BASE_DIR,
        env={
            **os.environ,
            "DATABASE_URL": f"postgres://{auth}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "DJANGO_SETTINGS_MODULE": "callcenter.settings_test",
            "Q_SYNC": "false",
            "PYTHONUNBUFFERED": "1",
            **env,
        },
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    return proc, log


def test_qcluster__the_webhooks_cluster_delivers_and_leaves_the_maintenance_queue(
    tmp_path, receiver, monkeypatch
):
    monkeypatch.setattr(Conf, "SYNC", False)  # queue tasks, as production does
    # A maintenance task first, then a delivery: a cluster that served the
    # default queue would take the maintenance task before the delivery.
    async_task("math.floor", 1.5, task_name="maintenance-probe")
    batch = BatchFactory()
    WebhookEndpoint.objects.create(account=batch.account, url=receiver.url)
    batch_services.batch_pause(batch=batch, actor=Actor.system("tests"))
    assert sorted(OrmQ.objects.values_list("key", flat=True)) == [
        "callcenter",
        "webhooks",
    ]

    proc, log = start_qcluster(tmp_path, Q_CLUSTER_NAME="webhooks")
    try:
        deadline = time.monotonic() + 60
        while not receiver.requests and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.1)
        assert receiver.requests, f"no delivery:\n{log.read_text()}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    assert WebhookDelivery.objects.get().attempts == 1
    # The maintenance task is still waiting for the default cluster.
    assert list(OrmQ.objects.values_list("key", flat=True)) == ["callcenter"]
