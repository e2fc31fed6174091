"""Smoke tests of the bench harness: structure and correctness, never timings."""

from __future__ import annotations

import json

import pytest

from bench import claimers, datagen
from bench.report import Report, percentile


@pytest.mark.django_db(transaction=True)
def test_history_shaped__has_the_issue_shape():
    from jobs.models import Job

    dataset = datagen.history_shaped(1000, batches=4, slug="smoke")

    assert dataset.total_jobs == Job.objects.count() == 1000
    assert Job.objects.filter(status="completed").count() == 400
    assert (
        Job.objects.filter(status="pending", batch__is_active=False).count()
        == Job.objects.filter(status="pending", batch__is_active=True).count()
        == dataset.active_pending
        == 300
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "kind", ["ours", "ours-batch", "ours-claim", "raw", "raw-async", "raw-same"]
)
def test_drain__completes_every_job_once(kind):
    from django.db import connection

    from jobs.models import Job

    account = datagen.create_account("smoke")
    batches = datagen.create_batches(account, 2, active=True, prefix="smoke")
    datagen.insert_jobs(account, batches, 30)
    url = _url(connection.settings_dict)

    run = claimers.drain(kind, 2, options={"url": url})

    assert run.errors == []
    assert run.jobs == 60
    assert Job.objects.filter(status="completed").count() == 60


@pytest.mark.django_db(transaction=True)
def test_drain__raw_same_work_leaves_paused_batches_alone():
    """The raw baseline of the 0.95x target does the claim's batch check."""
    from django.db import connection

    from jobs.models import Job

    account = datagen.create_account("smoke")
    active = datagen.create_batches(account, 1, active=True, prefix="on")
    paused = datagen.create_batches(account, 1, active=False, prefix="off")
    datagen.insert_jobs(account, active, 20)
    datagen.insert_jobs(account, paused, 20, start=1000)

    run = claimers.drain("raw-same", 2, options={"url": _url(connection.settings_dict)})

    assert run.errors == []
    assert run.jobs == 20
    assert Job.objects.filter(batch_id__in=paused, status="pending").count() == 20


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("kind", "per_step"), [("django-q2", 1), ("django-q2-bulk", 10)]
)
def test_drain__django_q2_takes_its_own_bulk(kind, per_step):
    from django_q.models import OrmQ

    from bench import peers

    peers.djangoq_fill(40)

    run = claimers.drain(kind, 1, options={})

    assert run.errors == []
    assert run.jobs == 40
    assert run.results[0].steps == 40 // per_step
    assert not OrmQ.objects.exists()


def test_before__reads_the_run_before_the_rework():
    from bench import before

    assert before.figure("ratio:ours-claim/raw:8") == "0.81x (target >= 0.8x)"
    assert before.figure("ratio:ours-claim/raw-same:8") == (
        "0.81x against raw CTE (target >= 0.8x)"
    )
    assert before.figure("rate:raw-same:1") == "not measured"
    assert before.figure("patch:resume:unniced") == "538 ms (no target)"


def test_report__renders_markdown_and_json(tmp_path):
    report = Report(machine={"cores": 2})
    report.add(
        "1 throughput",
        "ours",
        123.4,
        "jobs/s",
        target="> 1x",
        passed=True,
        spread="120-130 (n=5)",
        before="100 jobs/s",
    )
    report.missing.append("peer x: not installed")

    text = report.markdown()
    path = report.save(tmp_path / "r.json")

    assert text.splitlines()[0].startswith("| section | figure | value | spread |")
    assert (
        "| 1 throughput | ours | 123 jobs/s | 120-130 (n=5) | > 1x | PASS |  |"
        " 100 jobs/s |" in text
    )
    assert json.loads(path.read_text())["rows"][0]["value"] == 123.4
    assert percentile([1, 2, 3, 4], 50) == 2
    assert percentile([1, 2, 3, 4], 99) == 4


def _url(s: dict) -> str:
    return (
        f"postgres://{s['USER']}:{s.get('PASSWORD') or ''}@{s['HOST']}:{s['PORT']}"
        f"/{s['NAME']}"
    )


def test_docs__writes_one_runs_figures_between_the_markers(tmp_path):
    from bench import docs

    report = Report(machine={"cores": 2, "loadavg_at_start": [0.5, 0.4, 0.3]})
    for kind, rate in (("ours-claim", 900.0), ("raw-same", 1000.0)):
        report.add(
            "1 throughput",
            f"{kind}, 1 claimers",
            rate,
            "jobs/s",
            spread="800-1,100 (n=5)",
            key=f"rate:{kind}:1",
        )
    report.add(
        "1 throughput",
        "ours-claim / raw-same, 1 claimers",
        None,
        "",
        target=">= 0.95x",
        passed=False,
        ratio=0.9,
        spread="0.85-0.97 (n=5)",
        key="ratio:ours-claim/raw-same:1",
        before="1.04x against raw CTE (target >= 0.8x)",
    )
    report.add(
        "4 control plane",
        "PATCH pause p99",
        42.0,
        "ms",
        target="p99 <= 50 ms",
        passed=True,
        key="patch:pause:niced",
    )
    results = report.save(tmp_path / "run.json")
    doc = tmp_path / "performance.md"
    doc.write_text(f"# P\n\nintro\n\n{docs.START}\nold figures\n{docs.END}\n\nafter\n")

    docs.write(results, doc)

    text = doc.read_text()
    assert "old figures" not in text
    assert text.startswith("# P\n\nintro\n\n")
    assert text.endswith("\n\nafter\n")
    assert "load average 0.5 / 0.4 / 0.3" in text
    assert "| ours-claim | 900 (800-1,100) |" in text
    assert (
        "0.90 (0.85-0.97) **MISSED** | >= 0.95x | 1.04 against raw CTE"
        " (target >= 0.8x) |" in text
    )
    assert (
        "| 4 control plane | PATCH pause p99 | 42.0 ms | p99 <= 50 ms | pass |" in text
    )


def test_pacing_max_in_window__counts_a_sliding_half_open_second():
    from bench.pacing import max_in_window

    # Six requests 0.2 s apart: [0, 1) holds five; the sixth is at 1.0.
    assert max_in_window([0.0, 0.2, 0.4, 0.6, 0.8, 1.0]) == 5
    # A late one crowds the next second: 0.25 .. 1.2 holds six.
    assert max_in_window([0.0, 0.25, 0.4, 0.6, 0.8, 1.0, 1.2]) == 6
    assert max_in_window([]) == 0


def _send_raw(client, raw: bytes):
    """One of the load generator's prepared requests, through Django's test
    client (the same path, headers and body)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    request_line, *lines = head.decode().split("\r\n")
    _method, path, _version = request_line.split(" ")
    headers = dict(line.split(": ", 1) for line in lines)
    content_type = headers.pop("Content-Type")
    for name in ("Host", "Connection", "Content-Length"):
        headers.pop(name)
    return client.post(path, data=body, content_type=content_type, headers=headers)


@pytest.mark.django_db(transaction=True)
def test_callbacks__the_signed_plan_is_accepted_and_ends_every_attempt(
    client, settings
):
    """The callbacks section's requests, built and signed as the providers
    do, pass the views' signature checks and move every attempt and job as
    their events say."""
    from bench import callbacks
    from callcenter.standard_webhooks import generate_secret

    secret = generate_secret()
    for name, value in callbacks.server_env(secret).items():
        setattr(settings, name, value)
    attempts = callbacks.put_in_flight(40, slug="smoke-callbacks")
    lanes = callbacks.build_lanes(attempts, host="testserver", secret=secret, lanes=3)

    statuses = [_send_raw(client, raw).status_code for lane in lanes for _, raw in lane]

    assert len(attempts["twilio"]) == len(attempts["http"]) == 20
    # 18 answered attempts of 3 events and 2 unanswered of 2, per provider.
    assert statuses == [200] * (2 * (18 * 3 + 2 * 2))
    facts = callbacks.check_outcome(attempts)
    assert facts["correct"] == 1, facts
    assert facts["retrying_jobs"] == 4


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_inflight__a_real_twilio_worker_holds_its_calls_in_flight(monkeypatch):
    """The calls-in-flight section's measure: a run_call_worker --dialer
    twilio subprocess against the fake Twilio process, sampled once every
    call is in flight."""
    import subprocess
    import sys

    from django.db import connection

    from bench import inflight

    monkeypatch.setenv("DATABASE_URL", _url(connection.settings_dict))
    monkeypatch.setattr(inflight, "SAMPLE_SECONDS", 0.6)
    monkeypatch.setattr(inflight, "WAIT_SECONDS", 30.0)
    fake = subprocess.Popen(
        [sys.executable, "-m", "bench.fake_twilio_server", inflight.SID, inflight.AUTH],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = fake.stdout.readline().strip()
        result = inflight.measure(5, url)
    finally:
        fake.stdin.close()
        fake.wait(timeout=10)

    assert result["in_flight_min"] == 5
    assert [s["in_flight"] for s in result["samples"]] == [5] * len(result["samples"])
    assert 0 < result["threads"] <= inflight.MAX_THREADS
    assert result["rss_kib"] > 10_000
