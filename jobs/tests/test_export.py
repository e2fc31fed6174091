"""Results export: GET /api/v1/batches/{id}/results.csv|.jsonl and the admin
action, streamed one chunk of rows at a time."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from accounts.models import CreditEntry
from batches.tests.factories import BatchFactory
from jobs import export
from jobs.models import Job, JobStatus
from jobs.tests.factories import JobFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def url(batch, fmt: str = "csv", query: str = "") -> str:
    return f"/api/v1/batches/{batch.batch_id}/results.{fmt}{query}"


def body(response) -> bytes:
    assert response.status_code == 200, response.content
    return b"".join(response.streaming_content)


def csv_rows(response) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body(response).decode("utf-8"))))


@pytest.fixture(autouse=True, params=["postgresql", "python"])
def writer(request, monkeypatch):
    """Every test runs against both writers: PostgreSQL's and Python's."""
    monkeypatch.setattr(export, "USE_POSTGRESQL", request.param == "postgresql")
    return request.param


@pytest.fixture
def batch(account):
    return BatchFactory(account=account)


def finished_job(batch, **kwargs):
    attempt = {
        "attempt": 1,
        "outcome": "answered",
        "started_at": "2026-11-30T09:00:00+00:00",
        "ended_at": "2026-11-30T09:01:05+00:00",
        "duration_seconds": 65.0,
    }
    defaults = {
        "status": JobStatus.COMPLETED,
        "attempts": 1,
        "attempt_log": [{**attempt, "outcome": "busy"}, attempt],
        "result": {"outcome": "answered"},
        "finished_at": T0 + timedelta(minutes=1),
    }
    return JobFactory(batch=batch, **{**defaults, **kwargs})


def charge(job: Job, *amounts: int) -> None:
    for n, amount in enumerate(amounts):
        CreditEntry.objects.create(
            account_id=job.account_id,
            kind=CreditEntry.Kind.RESERVE if amount < 0 else CreditEntry.Kind.SETTLE,
            amount=amount,
            balance_after=0,
            job_pk=job.pk,
            claim_key=f"k{n}",
        )


def test_results_csv__one_row_per_job_with_its_columns(api_client, batch):
    done = finished_job(
        batch, variables={"first_name": "Ana", "plan": "gold"}, status="done"
    )
    charge(done, -5, 2)  # reserved 5, settled 2 back: the call cost 3
    pending = JobFactory(batch=batch, variables={"first_name": "Luis", "age": 40})
    cancelled = JobFactory(
        batch=batch, status=JobStatus.CANCELLED, cancel_reason="Batch deleted"
    )
    JobFactory()  # another batch: not exported

    rows = csv_rows(api_client.get(url(batch)))

    assert [r["job_id"] for r in rows] == [
        str(j.pk) for j in (done, pending, cancelled)
    ]
    first = rows[0]
    assert first["batch_id"] == batch.batch_id
    assert first["phone_number"] == "'" + done.phone_number
    assert first["status"] == "completed"
    assert first["outcome"] == "answered"
    assert first["attempts"] == "1"
    assert first["last_attempt_started_at"] == "2026-11-30T09:00:00+00:00"
    assert first["last_attempt_ended_at"] == "2026-11-30T09:01:05+00:00"
    assert first["last_attempt_duration_seconds"] == "65.0"
    assert first["finished_at"] == "2026-11-30T09:01:00+00:00"
    assert first["cost"] == "3"
    assert first["variables.first_name"] == "Ana"
    assert first["variables.plan"] == "gold"
    assert first["variables.age"] == ""
    assert rows[1]["variables.age"] == "40"
    assert rows[1]["status"] == "pending"
    assert rows[1]["cost"] == "0"
    assert rows[1]["last_attempt_started_at"] == ""
    assert rows[2]["cancel_reason"] == "Batch deleted"


def test_results_csv__escapes_formula_cells(api_client, batch):
    JobFactory(
        batch=batch,
        variables={
            "a": '=HYPERLINK("http://x")',
            "b": "@SUM(A1)",
            "c": "-2+3",
            "d": "\t=1",
            "e": "\r=1",
            "f": "plain = text",
        },
        status=JobStatus.CANCELLED,
        cancel_reason="+cmd",
    )

    (row,) = csv_rows(api_client.get(url(batch)))

    assert row["variables.a"] == '\'=HYPERLINK("http://x")'
    assert row["variables.b"] == "'@SUM(A1)"
    assert row["variables.c"] == "'-2+3"
    assert row["variables.d"] == "'\t=1"
    assert row["variables.e"] == "'\r=1"
    assert row["variables.f"] == "plain = text"
    assert row["cancel_reason"] == "'+cmd"


def test_results_csv__utf8_and_bom_on_request(api_client, batch):
    JobFactory(batch=batch, variables={"nombre": "Peñalolén"})

    plain = body(api_client.get(url(batch)))
    with_bom = body(api_client.get(url(batch, query="?bom=1")))

    assert not plain.startswith(b"\xef\xbb\xbf")
    assert with_bom == b"\xef\xbb\xbf" + plain
    assert "Peñalolén" in plain.decode("utf-8")


def test_results__filters_as_the_job_list(api_client, batch):
    answered = finished_job(batch)
    finished_job(batch, result={"outcome": "voicemail"})
    old = finished_job(batch, finished_at=T0 - timedelta(days=2))
    JobFactory(batch=batch)

    def ids(query: str) -> list[int]:
        return [
            int(r["job_id"]) for r in csv_rows(api_client.get(url(batch, "csv", query)))
        ]

    assert len(ids("?status=pending")) == 1
    assert len(ids("?status=done")) == 3
    assert ids("?outcome=answered") == [answered.pk, old.pk]
    since = (T0 - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert old.pk not in ids(f"?status=completed&finished_since={since}")
    assert len(ids(f"?finished_since={since}")) == 2


def test_results_jsonl__one_object_per_job(api_client, batch):
    job = finished_job(batch, variables={"first_name": "Ana", "tags": ["a", "b"]})
    charge(job, -4)

    lines = body(api_client.get(url(batch, "jsonl"))).decode().splitlines()

    (record,) = [json.loads(line) for line in lines]
    assert record["job_id"] == job.pk
    assert record["phone_number"] == job.phone_number  # no CSV escaping in JSON
    assert record["variables"] == {"first_name": "Ana", "tags": ["a", "b"]}
    assert record["cost"] == 4
    assert record["last_attempt_duration_seconds"] == 65.0
    assert record["outcome"] == "answered"


def test_results__accepts_the_media_type_it_sends(api_client, batch):
    JobFactory(batch=batch)

    csv_response = api_client.get(url(batch), HTTP_ACCEPT="text/csv")
    jsonl_response = api_client.get(
        url(batch, "jsonl"), HTTP_ACCEPT="application/x-ndjson"
    )

    assert csv_response["Content-Type"] == "text/csv; charset=utf-8"
    assert f'filename="{batch.batch_id}.csv"' in csv_response["Content-Disposition"]
    assert len(csv_rows(csv_response)) == 1
    assert len(body(jsonl_response).splitlines()) == 1


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?status=nope", "status"),
        ("?finished_since=yesterday", "finished_since"),
        ("?bom=maybe", "bom"),
    ],
)
def test_results__bad_filters_are_400(api_client, batch, query, field):
    response = api_client.get(url(batch, "csv", query))

    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


def test_results__bom_is_for_csv_only(api_client, batch):
    response = api_client.get(url(batch, "jsonl", "?bom=1"))

    assert response.status_code == 400
    assert "bom" in response.json()["error"]["fields"]


def test_results__another_accounts_batch_is_404(other_client, batch):
    assert other_client.get(url(batch)).status_code == 404
    assert other_client.get(url(batch, "xml")).status_code == 404


def test_results__needs_authentication(client, batch):
    assert client.get(url(batch)).status_code == 401


def test_escape_cell__only_text_that_a_spreadsheet_would_evaluate():
    assert export.escape_cell("=1") == "'=1"
    assert export.escape_cell("a=1") == "a=1"
    assert export.escape_cell(-1) == -1
    assert export.escape_cell(None) is None
    assert export.escape_cell("") == ""


def insert_jobs(batch, n: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO jobs_job (account_id, batch_id, phone_number, variables,
                status, priority, attempts, max_attempts, claimed_by, call_id,
                attempt_log, last_error, cancel_reason, created_at, updated_at)
            SELECT %s, %s, '+1555' || lpad(g::text, 7, '0'),
                jsonb_build_object('n', g, 'name', 'Ana ' || g),
                'pending', 0, 0, 3, '', '', '[]'::jsonb, '', '', now(), now()
            FROM generate_series(1, %s) AS g
            """,
            [batch.account_id, batch.pk, n],
        )


@pytest.mark.slow
@pytest.mark.parametrize("writer", ["postgresql"], indirect=True)
def test_results_csv__100k_rows_stream_in_bounded_chunks(api_client, batch, writer):
    n = 100_000
    insert_jobs(batch, n)

    response = api_client.get(url(batch))
    assert response.streaming
    chunks = lines = biggest = 0
    head = last = b""
    for chunk in response.streaming_content:
        chunks += 1
        biggest = max(biggest, len(chunk))
        lines += chunk.count(b"\n")
        if len(head) < 1000:
            head += chunk[:1000]
        last = chunk

    assert lines == n + 1  # the header, then one line per job
    header, first = list(csv.reader(head.decode().splitlines()[:2]))
    (final,) = csv.reader([last.decode().splitlines()[-1]])
    assert header[-2:] == ["variables.n", "variables.name"]
    assert (first[2], first[-2], first[-1]) == ("'+15550000001", "1", "Ana 1")
    assert (final[2], final[-2], final[-1]) == ("'+15550100000", "100000", "Ana 100000")
    # Streamed: many pieces of bounded size, never the whole file at once.
    assert chunks >= 10
    assert biggest < 2_000_000


def test_admin_export_action__streams_the_selected_batches(admin_client, account):
    first, second, other = (BatchFactory(account=account) for _ in range(3))
    a = finished_job(first, variables={"x": "1"})
    b = JobFactory(batch=second, variables={"y": "2"})
    JobFactory(batch=other)

    response = admin_client.post(
        "/admin/batches/batch/",
        {"action": "export_results", "_selected_action": [first.pk, second.pk]},
    )

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert "results-2-batches.csv" in response["Content-Disposition"]
    rows = csv_rows(response)
    assert [(r["batch_id"], r["job_id"]) for r in rows] == [
        (first.batch_id, str(a.pk)),
        (second.batch_id, str(b.pk)),
    ]
    assert (rows[0]["variables.x"], rows[1]["variables.y"]) == ("1", "2")


def test_results__dnc_and_opt_out_flags(api_client, batch):
    from callcenter.actor import Actor
    from jobs.dnc import dnc_add

    opted = finished_job(batch, result={"outcome": "answered", "opt_out": True})
    stopped = JobFactory(
        batch=batch, status=JobStatus.CANCELLED, stop_code="dnc", cancel_reason="x"
    )
    free = JobFactory(batch=batch)
    dnc_add(
        account=batch.account,
        numbers=[opted.phone_number],
        actor=Actor.system("t"),
    )
    dnc_add(account=None, numbers=[stopped.phone_number], actor=Actor.system("t"))

    rows = {int(r["job_id"]): r for r in csv_rows(api_client.get(url(batch)))}
    lines = body(api_client.get(url(batch, "jsonl"))).decode().splitlines()
    records = {r["job_id"]: r for r in map(json.loads, lines)}

    expected = {
        opted.pk: ("", True, True),
        stopped.pk: ("dnc", True, False),
        free.pk: ("", False, False),
    }
    for pk, (code, on_dnc, opted_out) in expected.items():
        row = rows[pk]
        assert (row["stop_code"], row["on_dnc"], row["opted_out"]) == (
            code,
            str(on_dnc).lower(),
            str(opted_out).lower(),
        )
        record = records[pk]
        assert (record["stop_code"], record["on_dnc"], record["opted_out"]) == (
            code,
            on_dnc,
            opted_out,
        )
