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
@pytest.mark.parametrize("kind", ["ours", "raw"])
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


def test_report__renders_markdown_and_json(tmp_path):
    report = Report(machine={"cores": 2})
    report.add("1 throughput", "ours", 123.4, "jobs/s", target="> 1x", passed=True)
    report.missing.append("peer x: not installed")

    text = report.markdown()
    path = report.save(tmp_path / "r.json")

    assert text.splitlines()[0].startswith("| section | figure | value |")
    assert "| 1 throughput | ours | 123 jobs/s | > 1x | PASS |" in text
    assert json.loads(path.read_text())["rows"][0]["value"] == 123.4
    assert percentile([1, 2, 3, 4], 50) == 2
    assert percentile([1, 2, 3, 4], 99) == 4


def _url(s: dict) -> str:
    return (
        f"postgres://{s['USER']}:{s.get('PASSWORD') or ''}@{s['HOST']}:{s['PORT']}"
        f"/{s['NAME']}"
    )
