from __future__ import annotations

import pytest

from batches.tests.factories import BatchFactory
from jobs.imports import INSERT_CHUNK, jobs_import, rows_from_csv
from jobs.models import Job
from jobs.tests.factories import JobFactory

pytestmark = pytest.mark.django_db


def _csv(count: int, bad_at: int | None = None) -> bytes:
    lines = ["phone_number,name"]
    for i in range(count):
        phone = "not a number" if i == bad_at else f"+1415{5000000 + i:07d}"
        lines.append(f"{phone},Name\\t{i}")
    return ("\n".join(lines) + "\n").encode()


def test_jobs_import__streamed_upload_with_a_late_bad_row_writes_nothing(system_actor):
    batch = BatchFactory()
    count = INSERT_CHUNK + 10  # the first chunk has gone to COPY already

    result = jobs_import(
        batch=batch,
        rows=rows_from_csv(_csv(count, bad_at=count - 2)),
        actor=system_actor,
        from_text=True,
    )

    assert [e.row for e in result.errors] == [count]  # header is line 1
    assert result.created == 0
    assert not Job.objects.filter(batch=batch).exists()


def test_jobs_import__streamed_upload_keeps_escapes_in_variables(system_actor):
    batch = BatchFactory()

    result = jobs_import(
        batch=batch, rows=rows_from_csv(_csv(3)), actor=system_actor, from_text=True
    )

    assert result.created == result.pending == 3
    job = Job.objects.get(batch=batch, phone_number="+14155000001")
    assert job.variables == {"name": "Name\\t1"}
    assert job.status == "pending"


def test_jobs_import__into_a_batch_with_jobs_still_reports_existing_numbers(
    system_actor,
):
    batch = BatchFactory()
    JobFactory(batch=batch, phone_number="+14155000001")

    result = jobs_import(
        batch=batch, rows=rows_from_csv(_csv(3)), actor=system_actor, from_text=True
    )

    assert [e.row for e in result.errors] == [3]
    assert Job.objects.filter(batch=batch).count() == 1
