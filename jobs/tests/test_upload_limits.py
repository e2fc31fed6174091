"""IMPORT_MAX_BYTES, and CSV files read row by row (the live web process's
memory is measured in test_upload_limit_live.py)."""

from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import RequestFactory

from batches.tests.factories import BatchFactory
from batches.tests.test_api_batches import assert_error
from callcenter.api import ApiError
from jobs.imports import ImportTooLargeError, jobs_import, rows_from_csv
from jobs.models import Job
from jobs.views import UPLOAD_CHUNK, CSVBodyParser

pytestmark = pytest.mark.django_db

LIMIT = 4096


@pytest.fixture
def batch(account):
    return BatchFactory(account=account)


@pytest.fixture
def limit(settings):
    settings.IMPORT_MAX_BYTES = LIMIT
    return LIMIT


def jobs_url(batch) -> str:
    return f"/api/v1/batches/{batch.batch_id}/jobs"


def csv_body(size: int) -> bytes:
    """A readable CSV of exactly ``size`` bytes: distinct numbers, padded."""
    lines = [b"phone_number,note\n"]
    total = len(lines[0])
    i = 0
    while total < size:
        line = f"+1415{5550000 + i:07d},{'x' * 40}\n".encode()
        lines.append(line)
        total += len(line)
        i += 1
    return b"".join(lines)[:size]


def test_batch_jobs_import__csv_body_over_import_max_bytes_is_413(
    api_client, batch, limit
):
    body = csv_body(limit + 1)
    response = api_client.generic("POST", jobs_url(batch), body, "text/csv")
    error = assert_error(response, 413, "too_large")
    assert str(limit) in error["message"]
    assert not Job.objects.exists()


def test_batch_jobs_import__csv_body_at_import_max_bytes_is_read(
    api_client, batch, limit
):
    body = csv_body(limit).rsplit(b"\n", 1)[0] + b"\n"  # whole rows only
    response = api_client.generic("POST", jobs_url(batch), body, "text/csv")
    assert response.status_code == 201, response.content
    assert response.json()["created"] == body.count(b"\n") - 1


def test_batch_jobs_import__multipart_file_over_import_max_bytes_is_413(
    api_client, batch, limit
):
    upload = SimpleUploadedFile("jobs.csv", csv_body(limit + 1))
    response = api_client.post(jobs_url(batch), {"file": upload}, format="multipart")
    assert_error(response, 413, "too_large")
    assert not Job.objects.exists()


def test_batch_jobs_import__json_body_over_import_max_bytes_is_413(
    api_client, batch, limit
):
    rows = [{"phone_number": f"+1415{5550000 + i:07d}"} for i in range(200)]
    response = api_client.post(jobs_url(batch), rows)
    assert_error(response, 413, "too_large")
    assert not Job.objects.exists()


def test_csv_body_parser__counts_the_bytes_of_a_body_with_no_declared_length(limit):
    """A body whose length is not declared (chunked, under ASGI) is counted
    as it is copied, and refused once it passes the limit."""
    request = RequestFactory().post("/", data=b"", content_type="text/csv")
    request.META.pop("CONTENT_LENGTH", None)
    body = csv_body(20 * UPLOAD_CHUNK)
    stream = io.BytesIO(body)

    with pytest.raises(ApiError) as refused:
        CSVBodyParser().parse(stream, "text/csv", {"request": request})

    assert refused.value.status_code == 413
    assert stream.tell() <= UPLOAD_CHUNK < len(body)  # it stopped reading


class CountingFile(io.BytesIO):
    """A file that remembers how far it has been read."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.furthest = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.furthest = max(self.furthest, self.tell())
        return data

    def read1(self, size: int | None = -1) -> bytes:
        data = super().read1(size)
        self.furthest = max(self.furthest, self.tell())
        return data

    def readinto(self, buffer) -> int:  # type: ignore[override]
        count = super().readinto(buffer)
        self.furthest = max(self.furthest, self.tell())
        return count


def test_jobs_import__reads_a_csv_file_row_by_row(batch, system_actor, settings):
    """Rows are parsed as the import consumes them: a file over the row
    limit is refused after reading a little past the limit, not all of it."""
    settings.API_IMPORT_MAX_ROWS = 100
    data = csv_body(4 * 1024 * 1024)
    upload = CountingFile(data)

    with pytest.raises(ImportTooLargeError):
        jobs_import(
            batch=batch, rows=rows_from_csv(upload), actor=system_actor, from_text=True
        )

    assert upload.furthest < len(data) // 20
    assert not Job.objects.exists()


def test_batch_jobs_import__multipart_file_on_disk_is_read_row_by_row(
    api_client, batch, settings
):
    """A file over FILE_UPLOAD_MAX_MEMORY_SIZE is stored on disk by Django,
    and imported from there."""
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1024
    body = csv_body(64 * 1024).rsplit(b"\n", 1)[0] + b"\n"
    upload = SimpleUploadedFile("jobs.csv", body)

    response = api_client.post(jobs_url(batch), {"file": upload}, format="multipart")

    assert response.status_code == 201, response.content
    assert Job.objects.filter(batch=batch).count() == body.count(b"\n") - 1
