from __future__ import annotations

from datetime import UTC, datetime

import pytest

from batches.tests.factories import BatchFactory
from callcenter.actor import Actor
from jobs.imports import (
    ImportFormatError,
    jobs_import,
    normalize_phone,
    rows_from_csv,
    rows_from_json,
)
from jobs.models import Job, JobStatus

pytestmark = pytest.mark.django_db

ACTOR = Actor.system("tests")


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+14155550100", "US", "+14155550100"),
        ("+1 (415) 555-0100", "US", "+14155550100"),
        ("415.555.0100", "US", "+14155550100"),
        ("612 34 56 78", "ES", "+34612345678"),
        ("+39 06 1234 5678", "US", "+390612345678"),
        ("0044 20 7946 0958", "ES", "+442079460958"),
        ("+1415555010", "US", None),
        ("+999", "US", None),
        ("hello", "US", None),
        ("", "US", None),
        ("+١٤١٥٥٥٥٠١٠٠", "US", "+14155550100"),  # Arabic-Indic digits
    ],
)
def test_normalize_phone__e164_or_none(raw, region, expected):
    assert normalize_phone(raw, region) == expected
    assert normalize_phone(raw, region, {}) == expected


def test_normalize_phone__region_cache_never_rejects_a_valid_number():
    cache: dict = {}
    # Same first digits, different NANP regions: the cache is only a shortcut.
    assert normalize_phone("+14165550100", "US", cache) == "+14165550100"  # CA
    assert normalize_phone("+14155550100", "US", cache) == "+14155550100"  # US


def test_jobs_import__copy_keeps_awkward_variables_and_defaults():
    batch = BatchFactory()
    tricky = {
        "quote": 'say "hi"',
        "backslash": "C:\\temp\\new",
        "tab": "a\tb",
        "lines": "one\ntwo\r\n",
        "unicode": "Lucía 📞",
        "nested": {"list": [1, 2.5, None, True]},
    }
    when = datetime(2099, 1, 1, 9, 0, tzinfo=UTC)
    result = jobs_import(
        batch=batch,
        rows=rows_from_json(
            [
                {"phone_number": "+14155550100", "variables": tricky, "priority": -3},
                {"phone_number": "+14155550101", "scheduled_at": when.isoformat()},
            ]
        ),
        actor=ACTOR,
    )
    assert (result.created, result.pending, result.scheduled) == (2, 1, 1)
    job = Job.objects.get(phone_number="+14155550100")
    assert job.variables == tricky
    assert job.priority == -3
    assert job.status == JobStatus.PENDING
    assert job.account_id == batch.account_id
    assert (job.attempts, job.attempt_log, job.result, job.claimed_by) == (
        0,
        [],
        None,
        "",
    )
    assert job.max_attempts == 3
    assert job.created_at is not None
    scheduled = Job.objects.get(phone_number="+14155550101")
    assert scheduled.status == JobStatus.SCHEDULED
    assert scheduled.scheduled_at == when


def test_jobs_import__past_scheduled_at_is_pending():
    batch = BatchFactory()
    jobs_import(
        batch=batch,
        rows=rows_from_json(
            [{"phone_number": "+14155550100", "scheduled_at": "2020-01-01T00:00:00"}]
        ),
        actor=ACTOR,
    )
    assert Job.objects.get().status == JobStatus.PENDING


def test_jobs_import__reopens_a_completed_batch_audited():
    from django.utils import timezone

    from batches.models import BatchEvent

    batch = BatchFactory(completed_at=timezone.now())
    rows = rows_from_json([{"phone_number": "+14155550100"}])
    jobs_import(batch=batch, rows=rows, actor=ACTOR)
    batch.refresh_from_db()
    assert batch.completed_at is None
    event = BatchEvent.objects.get(batch=batch, action="reopened")
    assert (event.source, event.reason) == ("system", "jobs were imported")


def test_rows_from_csv__numbers_rows_by_line_and_skips_blank_lines():
    rows = list(
        rows_from_csv(b"phone_number,name\n+14155550100,Ana\n\n+14155550101,Luis\n")
    )
    assert [r.row for r in rows] == [2, 4]
    assert rows[0].data == {"phone_number": "+14155550100", "name": "Ana"}


@pytest.mark.parametrize(
    "content",
    [b"", b"name\nAna\n", b"phone_number,,x\n1,2,3\n", b"phone_number,a,a\n", b"\xff"],
)
def test_rows_from_csv__rejects_unreadable_files(content):
    with pytest.raises(ImportFormatError):
        rows_from_csv(content)


@pytest.mark.slow
def test_jobs_import__twenty_thousand_csv_rows():
    batch = BatchFactory()
    lines = ["phone_number,first_name"] + [
        f"+1415{2000000 + i:07d},Ana{i}" for i in range(20_000)
    ]
    rows = list(rows_from_csv(("\n".join(lines) + "\n").encode()))
    result = jobs_import(batch=batch, rows=rows, actor=ACTOR, from_text=True)
    assert result.created == 20_000
    assert Job.objects.filter(batch=batch).count() == 20_000
    again = jobs_import(batch=batch, rows=rows[:3], actor=ACTOR, from_text=True)
    assert [e.row for e in again.errors] == [2, 3, 4]


def test_rows_from_csv__limits_variable_columns():
    with pytest.raises(ImportFormatError, match="variable columns"):
        rows_from_csv(
            ("phone_number," + ",".join(f"v{i}" for i in range(101))).encode()
        )
    with pytest.raises(ImportFormatError, match="Column names"):
        rows_from_csv(("phone_number," + "x" * 101).encode())


def test_jobs_import__csv_value_too_long_is_a_bad_row():
    batch = BatchFactory()
    rows = rows_from_csv(f"phone_number,note\n+14155550100,{'x' * 5001}\n".encode())
    result = jobs_import(batch=batch, rows=rows, actor=ACTOR, from_text=True)
    assert "at most 5000" in result.errors[0].errors[0]


def test_normalize_phone__fast_check_agrees_with_the_library():
    """The bulk path's shortcut must give the library's answer for valid,
    invalid and near-valid numbers of many regions."""
    import random

    import phonenumbers

    rng = random.Random(7)
    cache: dict = {}
    checked = 0
    for region in sorted(phonenumbers.SUPPORTED_REGIONS)[::5]:
        example = phonenumbers.example_number(region)
        if example is None:
            continue
        base = str(example.national_number)
        for _ in range(40):
            digits = list(base)
            for _ in range(rng.randint(0, 2)):
                digits[rng.randrange(len(digits))] = str(rng.randint(0, 9))
            raw = f"+{example.country_code}{''.join(digits)}"
            assert normalize_phone(raw, "US", cache) == normalize_phone(raw, "US")
            checked += 1
    assert checked > 1000


def test_jobs_import__late_bad_row_rolls_back_rows_already_copied(monkeypatch):
    import jobs.imports

    monkeypatch.setattr(jobs.imports, "INSERT_CHUNK", 2)
    batch = BatchFactory()
    good = [{"phone_number": f"+1415555010{i}"} for i in range(5)]
    result = jobs_import(
        batch=batch,
        rows=rows_from_json([*good, {"phone_number": "nope"}, good[0]]),
        actor=ACTOR,
    )
    assert [e.row for e in result.errors] == [6, 7]
    assert (result.created, result.pending) == (0, 0)
    assert not Job.objects.filter(batch=batch).exists()


@pytest.mark.parametrize("limit", [0, 1000], ids=["two-phase", "streaming"])
def test_jobs_import__both_paths_reject_numbers_already_in_batch(monkeypatch, limit):
    import jobs.imports

    monkeypatch.setattr(jobs.imports, "IMPORT_PREFETCH_LIMIT", limit)
    batch = BatchFactory()
    jobs_import(
        batch=batch,
        rows=rows_from_json([{"phone_number": "+14155550100"}]),
        actor=ACTOR,
    )
    result = jobs_import(
        batch=batch,
        rows=rows_from_json(
            [{"phone_number": "+14155550101"}, {"phone_number": "(415) 555-0100"}]
        ),
        actor=ACTOR,
    )
    assert [e.row for e in result.errors] == [2]
    assert "already a job of this batch" in result.errors[0].errors[0]
    ok = jobs_import(
        batch=batch,
        rows=rows_from_json([{"phone_number": "+14155550102"}]),
        actor=ACTOR,
    )
    assert ok.created == 1
    assert Job.objects.filter(batch=batch).count() == 2


def test_jobs_import__duplicate_written_behind_its_back_is_a_conflict(monkeypatch):
    """A writer that skips the service (and its lock) can still collide with
    an import; the unique constraint turns that into ImportConflictError."""
    import jobs.imports
    from jobs.imports import ImportConflictError

    batch = BatchFactory()
    real = jobs.imports._existing_numbers_if_few

    def then_someone_inserts(current):
        numbers = real(current)
        Job.objects.create(
            batch=batch, account=batch.account, phone_number="+14155550100"
        )
        return numbers

    monkeypatch.setattr(jobs.imports, "_existing_numbers_if_few", then_someone_inserts)
    with pytest.raises(ImportConflictError):
        jobs_import(
            batch=batch,
            rows=rows_from_json([{"phone_number": "+14155550100"}]),
            actor=ACTOR,
        )
