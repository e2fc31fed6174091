"""Acceptance: the django-q2 cluster layout, with a real ``qcluster`` process
started exactly as the Procfile starts the webhooks one."""

from __future__ import annotations

import time

import pytest
from django_q.brokers import get_broker
from django_q.tasks import async_task

from batches import services as batch_services
from batches.tests.factories import BatchFactory
from callcenter.actor import Actor
from callcenter.tests.qcluster import q_broker, start_qcluster
from webhooks.models import WebhookDelivery, WebhookEndpoint

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

__all__ = ["q_broker"]  # a fixture


def queued(queue: str) -> int:
    return get_broker(queue).queue_size()


def test_qcluster__the_webhooks_cluster_delivers_and_leaves_the_maintenance_queue(
    tmp_path, receiver, q_broker
):
    # A maintenance task first, then a delivery: a cluster that served the
    # default queue would take the maintenance task before the delivery.
    async_task("math.floor", 1.5, task_name="maintenance-probe")
    batch = BatchFactory()
    WebhookEndpoint.objects.create(account=batch.account, url=receiver.url)
    batch_services.batch_pause(batch=batch, actor=Actor.system("tests"))
    assert (queued("callcenter"), queued("webhooks")) == (1, 1)

    log = tmp_path / "qcluster.log"
    proc = start_qcluster(log, Q_CLUSTER_NAME="webhooks", **q_broker)
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
    assert (queued("callcenter"), queued("webhooks")) == (1, 0)
