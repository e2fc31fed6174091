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
