"""Prometheus metrics: /metrics access, what is counted, the worker's port.

Every exposition is parsed with prometheus_client's own parser.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from django.test import Client, override_settings
from prometheus_client.parser import text_string_to_metric_families

from batches.services import batch_pause
from batches.tests.factories import BatchFactory
from callcenter import metrics
from callcenter.actor import Actor
from jobs.claim import claim_jobs
from jobs.dialers.base import CallResult, Outcome
from jobs.lifecycle import CallEnd, mark_dialed, record_calls
from jobs.models import Job, JobStatus
from jobs.tests.factories import JobFactory
from jobs.tests.test_worker_process import start_worker  # noqa: F401  (fixture)
from webhooks.tests.server import receiver  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "scrape-secret-0123456789"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of an exposition."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = Client().get(
        "/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}", HTTP_HOST="10.0.0.5"
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    return samples(response.content.decode())


def test_metrics__off_unless_a_token_or_an_allow_list_is_set():
    assert Client().get("/metrics").status_code == 404


@override_settings(
    METRICS_TOKEN=TOKEN, ALLOWED_HOSTS=["calls.example.com"], SECURE_SSL_REDIRECT=True
)
def test_metrics__bearer_token():
    client = Client(HTTP_HOST="10.0.0.5")
    response = client.get("/metrics")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope")
    assert wrong.status_code == 401
    assert (
        client.get("/metrics", HTTP_AUTHORIZATION=f"Token {TOKEN}").status_code == 401
    )
    assert ("callcenter_jobs_claimed_total", ()) in scrape()


@override_settings(METRICS_ALLOWED_IPS=["10.1.2.3"])
def test_metrics__allow_list():
    assert Client(REMOTE_ADDR="10.1.2.3").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="10.1.2.4").get("/metrics").status_code == 403


@pytest.mark.django_db
@override_settings(METRICS_TOKEN=TOKEN)
def test_metrics__claims_calls_and_pauses_are_counted(account):
    batch = BatchFactory(account=account)
    JobFactory.create_batch(3, batch=batch)
    before = scrape()

    jobs = claim_jobs(worker_id="w1", limit=2)
    mark_dialed(jobs=jobs, worker_id="w1")
    dialed = list(Job.objects.filter(pk__in=[j.pk for j in jobs]))
    record_calls(
        ended=[
            CallEnd(
                job_id=job.pk,
                dialed_at=job.dialed_at,
                call_id="",
                result=CallResult(outcome=Outcome.BUSY, duration_seconds=0),
            )
            for job in dialed
        ],
        worker_id="w1",
    )
    batch_pause(batch=batch, actor=Actor.system("tests"))
    after = scrape()

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("callcenter_jobs_claimed_total") == 2
    assert delta("callcenter_claim_seconds_count") == 1
    ended = {
        "outcome": "busy",
        "batch": str(batch.pk),
        "account": str(account.pk),
    }
    assert delta("callcenter_calls_ended_total", **ended) == 2
    assert delta("callcenter_batch_pauses_total", source="system") == 1


@override_settings(METRICS_MAX_LABEL_VALUES=2)
def test_metrics__label_values_are_bounded():
    metrics._seen.pop("test-label", None)
    values = [metrics.bounded("test-label", v) for v in (1, 2, 3, 1, 4)]
    assert values == ["1", "2", metrics.OTHER, "1", metrics.OTHER]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_run_call_worker__metrics_port(account, start_worker):  # noqa: F811
    batch = BatchFactory(account=account)
    JobFactory.create_batch(3, batch=batch)
    port = free_port()
    worker = start_worker(
        "--metrics-port",
        str(port),
        "--metrics-address",
        "127.0.0.1",
        SIMULATED_CALL_SECONDS="0",
    )
    deadline = time.monotonic() + 60
    while Job.objects.filter(status=JobStatus.COMPLETED).count() < 3:
        assert worker.proc.poll() is None, worker.output
        assert time.monotonic() < deadline, worker.output
        time.sleep(0.05)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
        got = samples(r.read().decode())
    assert got[("callcenter_jobs_claimed_total", ())] == 3
    ended = (("account", str(account.pk)), ("batch", str(batch.pk)))
    assert got[("callcenter_calls_ended_total", (*ended, ("outcome", "answered")))] == 3


COUNT_IN_A_PROCESS = (
    "import sys; from callcenter import metrics; "
    "metrics.JOBS_CLAIMED.inc(int(sys.argv[1]))"
)


def test_metrics__multiprocess_mode_adds_up_every_process(tmp_path, monkeypatch):
    # What gunicorn's workers do: each process counts in its own files under
    # PROMETHEUS_MULTIPROC_DIR, and a scrape from any of them adds them up.
    for n in ("2", "3"):
        subprocess.run(
            [sys.executable, "-c", COUNT_IN_A_PROCESS, n],
            cwd=ROOT,
            env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
            check=True,
            timeout=60,
        )
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    got = samples(metrics.exposition().decode())
    assert got[("callcenter_jobs_claimed_total", ())] == 5


# --- The families added for operations: each moves when its event happens ----


class Scrapes:
    """Two scrapes of /metrics, before and after, and the difference."""

    def __init__(self) -> None:
        self.before = scrape()
        self.after: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def delta(self, name: str, **labels: str) -> float:
        if not self.after:
            self.after = scrape()
        key = (name, tuple(sorted(labels.items())))
        return self.after.get(key, 0.0) - self.before.get(key, 0.0)


@pytest.mark.django_db
@override_settings(METRICS_TOKEN=TOKEN)
def test_metrics__fenced_writes_refused(account):

    from jobs.lifecycle import recover_expired_leases, renew_leases

    batch = BatchFactory(account=account)
    JobFactory.create_batch(2, batch=batch)
    stale = claim_jobs(worker_id="w1", limit=2, token="t1")
    # The lease expires; another worker recovers the jobs and claims them.
    Job.objects.update(lease_expires_at=Job.objects.get(pk=stale[0].pk).claimed_at)
    assert recover_expired_leases(recoverer="w2") == 2
    assert len(claim_jobs(worker_id="w2", limit=2, token="t2")) == 2
    scrapes = Scrapes()

    assert mark_dialed(jobs=stale, worker_id="w1", token="t1") == []
    assert renew_leases(worker_id="w1", job_ids=[j.pk for j in stale], token="t1")
    record_calls(
        ended=[
            CallEnd(
                job_id=stale[0].pk,
                dialed_at=stale[0].claimed_at,
                call_id="",
                result=CallResult(outcome=Outcome.ANSWERED, duration_seconds=3),
            )
        ],
        worker_id="w1",
        token="t1",
    )

    assert scrapes.delta("callcenter_fenced_writes_refused_total", write="dial") == 2
    assert scrapes.delta("callcenter_fenced_writes_refused_total", write="renew") == 2
    assert scrapes.delta("callcenter_fenced_writes_refused_total", write="outcome") == 1
    # The refused outcome is not counted as a call ended.
    assert (
        scrapes.delta(
            "callcenter_calls_ended_total",
            outcome="answered",
            batch=str(batch.pk),
            account=str(account.pk),
        )
        == 0
    )


@pytest.mark.django_db
@override_settings(METRICS_TOKEN=TOKEN)
def test_metrics__credits_reserved_and_settled(account):
    from accounts.credits import (
        Settlement,
        credits_reserve,
        credits_reserve_many,
        credits_settle,
        credits_settle_many,
    )

    jobs = JobFactory.create_batch(4, batch=BatchFactory(account=account))
    scrapes = Scrapes()

    many = credits_reserve_many(
        account_id=account.pk, amount=5, claims=[(j.pk, "k") for j in jobs[:3]]
    )
    assert many == {j.pk for j in jobs[:3]}
    assert credits_reserve(account_id=account.pk, amount=5, job_pk=jobs[3].pk, key="k")
    # Reserving the same claim again takes nothing, and counts nothing.
    assert credits_reserve(account_id=account.pk, amount=5, job_pk=jobs[3].pk, key="k")
    credits_settle_many(
        account_id=account.pk,
        settlements=[Settlement(job_pk=j.pk, key="k", cost=2) for j in jobs[:3]],
    )
    credits_settle(account_id=account.pk, job_pk=jobs[3].pk, key="k", cost=9)

    assert scrapes.delta("callcenter_credits_reserved_total") == 20
    assert scrapes.delta("callcenter_credits_settled_total", direction="refunded") == 9
    assert scrapes.delta("callcenter_credits_settled_total", direction="charged") == 4


@pytest.mark.django_db(transaction=True)
@override_settings(METRICS_TOKEN=TOKEN, WEBHOOK_MAX_ATTEMPTS=2)
def test_metrics__webhook_deliveries_by_result(receiver):  # noqa: F811
    import time_machine
    from django.utils import timezone

    from webhooks.models import WebhookEndpoint
    from webhooks.services import webhooks_deliver_due

    receiver.statuses = [200, 500]
    good, bad = BatchFactory(), BatchFactory()
    WebhookEndpoint.objects.create(account=good.account, url=receiver.url)
    scrapes = Scrapes()
    batch_pause(batch=good, actor=Actor.system("tests"))  # 200: succeeded
    WebhookEndpoint.objects.create(account=bad.account, url=receiver.url)
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        batch_pause(batch=bad, actor=Actor.system("tests"))  # 500: retry
    with time_machine.travel(start + timedelta(hours=1), tick=False):
        assert webhooks_deliver_due() == 1  # 500 again: given up

    assert scrapes.delta("callcenter_webhook_deliveries_total", result="succeeded") == 1
    assert scrapes.delta("callcenter_webhook_deliveries_total", result="retry") == 1
    assert scrapes.delta("callcenter_webhook_deliveries_total", result="failed") == 1


@pytest.mark.django_db(transaction=True)
@override_settings(METRICS_TOKEN=TOKEN)
def test_metrics__database_errors_of_web_requests_and_workers(monkeypatch):
    import psycopg
    from django.db import OperationalError, connection

    from jobs.dialers.simulated import SimulatedDialer
    from jobs.worker import CallWorker

    scrapes = Scrapes()
    # A web request whose database connection was cut under it: the request
    # keeps the connection (no health check) and its first query fails.
    monkeypatch.setitem(connection.settings_dict, "CONN_HEALTH_CHECKS", False)
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", None)
    monkeypatch.setattr(connection, "close_at", None)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"],
        port=db["PORT"],
        user=db["USER"],
        dbname=db["NAME"],
        autocommit=True,
    ) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    client = Client(raise_request_exception=False)
    response = client.get(
        "/api/v1/batches", HTTP_AUTHORIZATION="Token " + "0" * 40, HTTP_HOST="10.0.0.5"
    )
    assert response.status_code == 500
    # A worker that loses the database backs off and counts it.
    worker = CallWorker(dialer=SimulatedDialer(), listen=False, worker_id="w1")
    worker.on_db_error(OperationalError("server closed the connection"))

    assert scrapes.delta("callcenter_database_errors_total", process="web") == 1
    assert scrapes.delta("callcenter_database_errors_total", process="worker") == 1


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_run_call_worker__calls_in_flight_and_json_logs(account, start_worker):  # noqa: F811
    import json

    JobFactory.create_batch(2, batch=BatchFactory(account=account))
    port = free_port()
    worker = start_worker(
        "--metrics-port",
        str(port),
        "--metrics-address",
        "127.0.0.1",
        "--concurrency",
        "2",
        SIMULATED_CALL_SECONDS="600",
        LOG_FORMAT="json",
    )

    def in_flight() -> float:
        url = f"http://127.0.0.1:{port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                got = samples(r.read().decode())
        except OSError:
            return -1.0  # not listening yet
        return got.get(("callcenter_calls_in_flight", ()), -1.0)

    deadline = time.monotonic() + 60
    while in_flight() != 2:
        assert worker.proc.poll() is None, worker.output
        assert time.monotonic() < deadline, worker.output
        time.sleep(0.05)
    lines = [line for line in worker.output.splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is one object
    started = next(e for e in entries if e.get("action") == "worker.started")
    assert started["level"] == "INFO"
    assert started["logger"] == "jobs.worker"
    assert started["concurrency"] == 2
    claimed = [e for e in entries if e.get("action") == "claim.claimed"]
    assert sum(len(e["job_ids"]) for e in claimed) == 2, entries


def test_grafana_dashboard__every_query_names_a_metric_we_export():
    import json
    import re

    from prometheus_client import REGISTRY

    dashboard = json.loads((ROOT / "docs/grafana/callcenter.json").read_text())
    exported = {
        sample
        for family in REGISTRY.collect()
        if family.name.startswith("callcenter_")
        for sample in (
            family.name,
            f"{family.name}_total",
            f"{family.name}_bucket",
            f"{family.name}_count",
            f"{family.name}_sum",
        )
    }
    used = set()
    for panel in dashboard["panels"]:
        assert panel["description"].endswith("?"), panel["title"]  # its question
        for target in panel["targets"]:
            names = set(re.findall(r"callcenter_[a-z_]+", target["expr"]))
            assert names, target["expr"]
            assert names <= exported, names - exported
            used |= {n.removesuffix("_total").removesuffix("_bucket") for n in names}
    defined = {f.name for f in REGISTRY.collect() if f.name.startswith("callcenter_")}
    assert defined <= used, f"metrics without a panel: {defined - used}"
    doc = (ROOT / "docs/operations.md").read_text()
    for panel in dashboard["panels"]:
        assert f"| {panel['title']} |" in doc, panel["title"]
