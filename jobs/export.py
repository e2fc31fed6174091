"""Results export: one row per job of one or more batches, as CSV or JSON
Lines, streamed in constant memory (docs/api.md, "Results export").

The rows come from one server-side cursor (``QuerySet.iterator``) read in
chunks inside one transaction, so the web process holds one chunk at a time
however large the batch, and the whole file is one consistent snapshot.
Do-not-call and opt-out flags are not columns yet: the product has no such
lists to read them from.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from django.db import connections, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.fields.json import KT

from accounts.models import CreditEntry
from jobs.models import COMPLETED_STATUSES, DncEntry, Job, JobStatus

# Rows fetched per round trip, and rows per yielded piece of the response.
CHUNK_ROWS = 5000
CHUNK_BYTES = 256 * 1024
# On PostgreSQL the database formats the rows (COPY, json_build_object);
# elsewhere (SQLite for `make run`) Python does. Tests run both on one data set.
USE_POSTGRESQL = True

COLUMNS = [
    "batch_id",
    "job_id",
    "phone_number",
    "status",
    "outcome",
    "attempts",
    "max_attempts",
    "last_attempt_started_at",
    "last_attempt_ended_at",
    "last_attempt_duration_seconds",
    "finished_at",
    "cancel_reason",
    "cost",
    # Who may not be called: the rule that stopped the job (dnc, opt_out,
    # no_consent, ...), whether its number is on a DNC list now (the
    # account's or the system's), and whether the person opted out.
    "stop_code",
    "on_dnc",
    "opted_out",
]
VARIABLE_PREFIX = "variables."
# A spreadsheet evaluates a cell that starts with one of these as a formula
# (tab and carriage return are how = hides from naive checks).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
BOM = "\ufeff"


def escape_cell(value: Any) -> Any:
    """Neutralise formula injection: prefix a dangerous text cell with '."""
    if value.__class__ is str and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def results_queryset(
    batch_ids: Sequence[int],
    *,
    status: str | None = None,
    outcome: str | None = None,
    finished_since: datetime | None = None,
) -> QuerySet[Job]:
    """The jobs of ``batch_ids`` with the same filters as the job list."""
    qs = Job.objects.filter(batch_id__in=list(batch_ids))
    if status:
        qs = qs.with_status(status)
    if outcome:
        qs = qs.filter(result__outcome=outcome)
    if finished_since is not None:
        qs = qs.filter(finished_at__gte=finished_since)
    return qs


def _cost_subquery() -> Subquery:
    # What the ledger charged for the job: reservations and settlements are
    # keyed by job_pk (credit_once_per_claim's index serves the lookup).
    return Subquery(
        CreditEntry.objects.filter(job_pk=OuterRef("pk"))
        .order_by()
        .values("job_pk")
        .annotate(total=Sum("amount"))
        .values("total")
    )


_FIELDS = (
    "batch__batch_id",
    "id",
    "phone_number",
    "status",
    "export_outcome",
    "attempts",
    "max_attempts",
    "attempt_log",
    "finished_at",
    "cancel_reason",
    "ledger_total",
    "stop_code",
    "export_on_dnc",
    "export_opt_out",
    "variables",
)


def _on_dnc() -> Exists:
    return Exists(
        DncEntry.objects.filter(
            Q(account_id=OuterRef("account_id")) | Q(account__isnull=True),
            phone_number=OuterRef("phone_number"),
        )
    )


def _rows(qs: QuerySet[Job]) -> Iterator[tuple[Any, ...]]:
    values = (
        qs.annotate(
            export_outcome=KT("result__outcome"),
            ledger_total=_cost_subquery(),
            export_on_dnc=_on_dnc(),
            export_opt_out=KT("result__opt_out"),
        )
        .order_by("id")
        .values_list(*_FIELDS)
    )
    # A transaction makes the server-side cursor a plain one (not WITH HOLD,
    # which PostgreSQL would materialise in full before the first row).
    with transaction.atomic():
        yield from values.iterator(chunk_size=CHUNK_ROWS)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _record(row: tuple[Any, ...]) -> tuple[list[Any], dict[str, Any]]:
    (
        batch_id,
        job_id,
        phone,
        status,
        outcome,
        attempts,
        max_attempts,
        attempt_log,
        finished_at,
        cancel_reason,
        ledger_total,
        stop_code,
        on_dnc,
        opt_out,
        variables,
    ) = row
    last = attempt_log[-1] if attempt_log else {}
    if not isinstance(last, dict):
        last = {}
    return (
        [
            batch_id,
            job_id,
            phone,
            JobStatus.COMPLETED.value if status in COMPLETED_STATUSES else status,
            outcome,
            attempts,
            max_attempts,
            last.get("started_at"),
            last.get("ended_at"),
            last.get("duration_seconds"),
            _iso(finished_at),
            cancel_reason,
            -ledger_total if ledger_total else 0,
            stop_code,
            bool(on_dnc),
            opt_out in (True, 1, "true", "1") or stop_code == "opt_out",
        ],
        variables if isinstance(variables, dict) else {},
    )


def variable_keys(qs: QuerySet[Job]) -> list[str]:
    """Every variable name used by the jobs, sorted: the CSV's extra columns."""
    from django.db import connection

    if connection.vendor == "postgresql":
        sql, params = qs.order_by().values("variables").query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT DISTINCT k FROM (" + sql + ") AS j(v), "
                "jsonb_object_keys(CASE jsonb_typeof(j.v) WHEN 'object' "
                "THEN j.v ELSE '{}'::jsonb END) AS k ORDER BY k",
                params,
            )
            return [row[0] for row in cursor.fetchall()]
    keys: set[str] = set()
    for variables in qs.values_list("variables", flat=True).iterator(CHUNK_ROWS):
        if isinstance(variables, dict):
            keys.update(variables)
    return sorted(keys)


def _csv_text(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def csv_stream(qs: QuerySet[Job], *, bom: bool = False) -> Iterator[bytes]:
    """The rows as UTF-8 CSV, in pieces of about CHUNK_BYTES."""
    keys = variable_keys(qs)
    head = io.StringIO()
    csv.writer(head, lineterminator="\n").writerow(
        [escape_cell(c) for c in COLUMNS + [VARIABLE_PREFIX + k for k in keys]]
    )
    yield ((BOM if bom else "") + head.getvalue()).encode()
    if _use_postgresql(qs):
        yield from _csv_copy(qs, keys)
    else:
        yield from _csv_python(qs, keys)


def _use_postgresql(qs: QuerySet[Job]) -> bool:
    return USE_POSTGRESQL and connections[qs.db].vendor == "postgresql"


def _csv_python(qs: QuerySet[Job], keys: list[str]) -> Iterator[bytes]:
    buffer = io.StringIO()
    # Every text cell quoted: with \n rows, QUOTE_MINIMAL would leave a bare
    # \r unquoted, which readers take for a line break.
    writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
    pending = 0
    for row in _rows(qs):
        fields, variables = _record(row)
        fields = [_csv_text(v) if isinstance(v, bool) else v for v in fields]
        fields.extend(_csv_text(variables.get(k)) for k in keys)
        writer.writerow([escape_cell(v) for v in fields])
        pending += 1
        if pending >= CHUNK_ROWS:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
            pending = 0
    if pending:
        yield buffer.getvalue().encode()


def _escaped(expression: str) -> str:
    return (
        f"CASE WHEN left({expression}, 1) IN ('=', '+', '-', '@', chr(9), chr(13))"
        f" THEN '''' || {expression} ELSE {expression} END"
    )


def _pg_select(qs: QuerySet[Job], columns: list[str]) -> tuple[str, list[Any]]:
    """``SELECT columns`` over the queryset's jobs, ordered by id; ``j`` is
    the job row, ``b`` its batch, ``{cost}`` the ledger's charge."""
    query = qs.query
    compiler = query.get_compiler(using=qs.db)
    where, params = compiler.compile(query.where)
    # The filters are the queryset's own, compiled against the bare table.
    where = where.replace('"jobs_job".', "j.")
    cost = (
        "COALESCE(-(SELECT sum(c.amount) FROM accounts_creditentry c"
        " WHERE c.job_pk = j.id), 0)"
    )
    select = ", ".join(columns).replace("{cost}", cost)
    sql = (
        f"SELECT {select} FROM jobs_job j JOIN batches_batch b ON b.id = j.batch_id"
        f" WHERE {where} ORDER BY j.id"
    )
    return sql, list(params)


_STATUS = "CASE WHEN j.status = 'done' THEN 'completed' ELSE j.status END"
_ON_DNC = (
    "EXISTS (SELECT 1 FROM jobs_dncentry d WHERE d.phone_number = j.phone_number"
    " AND (d.account_id = j.account_id OR d.account_id IS NULL))"
)
_OPTED_OUT = (
    "(COALESCE((j.result ->> 'opt_out') = 'true', false) OR j.stop_code = 'opt_out')"
)
_LAST = "(j.attempt_log -> -1)"


def _csv_copy(qs: QuerySet[Job], keys: list[str]) -> Iterator[bytes]:
    # PostgreSQL formats the rows (quoting included) and streams them through
    # COPY; Python only gathers them into pieces.
    columns = [
        "b.batch_id",
        "j.id",
        _escaped("j.phone_number"),
        _STATUS,
        _escaped("(j.result ->> 'outcome')"),
        "j.attempts",
        "j.max_attempts",
        _escaped(f"({_LAST} ->> 'started_at')"),
        _escaped(f"({_LAST} ->> 'ended_at')"),
        f"({_LAST} -> 'duration_seconds') #>> '{{}}'",
        "to_json(j.finished_at) #>> '{}'",
        _escaped("j.cancel_reason"),
        "{cost}",
        "j.stop_code",
        f"CASE WHEN {_ON_DNC} THEN 'true' ELSE 'false' END",
        f"CASE WHEN {_OPTED_OUT} THEN 'true' ELSE 'false' END",
    ]
    key_params: list[str] = []
    for key in keys:
        columns.append(_escaped("(j.variables ->> %s)"))
        key_params += [key, key, key]  # the CASE names its operand three times
    sql, params = _pg_select(qs, columns)
    connection = connections[qs.db]
    pending: list[bytes] = []
    size = 0
    with connection.cursor() as cursor:
        copy_sql = f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)"
        with cursor.cursor.copy(copy_sql, key_params + params) as copy:
            for data in copy:
                pending.append(bytes(data))
                size += len(data)
                if size >= CHUNK_BYTES:
                    yield b"".join(pending)
                    pending, size = [], 0
    if pending:
        yield b"".join(pending)


def jsonl_stream(qs: QuerySet[Job]) -> Iterator[bytes]:
    """The rows as JSON Lines: one object per job, variables nested."""
    if _use_postgresql(qs):
        yield from _jsonl_pg(qs)
        return
    lines: list[str] = []
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    for row in _rows(qs):
        fields, variables = _record(row)
        record = dict(zip(COLUMNS, fields, strict=True))
        record["variables"] = variables
        lines.append(dumps(record))
        if len(lines) >= CHUNK_ROWS:
            yield ("\n".join(lines) + "\n").encode()
            lines = []
    if lines:
        yield ("\n".join(lines) + "\n").encode()


def _jsonl_pg(qs: QuerySet[Job]) -> Iterator[bytes]:
    # PostgreSQL builds each line; Python only joins them.
    pairs = [
        ("batch_id", "b.batch_id"),
        ("job_id", "j.id"),
        ("phone_number", "j.phone_number"),
        ("status", _STATUS),
        ("outcome", "j.result ->> 'outcome'"),
        ("attempts", "j.attempts"),
        ("max_attempts", "j.max_attempts"),
        ("last_attempt_started_at", f"{_LAST} -> 'started_at'"),
        ("last_attempt_ended_at", f"{_LAST} -> 'ended_at'"),
        ("last_attempt_duration_seconds", f"{_LAST} -> 'duration_seconds'"),
        ("finished_at", "j.finished_at"),
        ("cancel_reason", "j.cancel_reason"),
        ("cost", "{cost}"),
        ("stop_code", "j.stop_code"),
        ("on_dnc", _ON_DNC),
        ("opted_out", _OPTED_OUT),
        ("variables", "j.variables"),
    ]
    obj = ", ".join(f"'{name}', {expr}" for name, expr in pairs)
    sql, params = _pg_select(qs, [f"json_build_object({obj})::text"])
    connection = connections[qs.db]
    # In a transaction the server-side cursor is a plain one, read as it goes
    # (outside one, WITH HOLD would materialise every row before the first).
    with transaction.atomic(using=qs.db):
        cursor = connection.chunked_cursor()
        try:
            cursor.execute(sql, params)
            while rows := cursor.fetchmany(CHUNK_ROWS):
                yield ("\n".join(r[0] for r in rows) + "\n").encode()
        finally:
            cursor.close()


def export_filename(batch_ids: Iterable[str], extension: str) -> str:
    ids = list(batch_ids)
    stem = ids[0] if len(ids) == 1 else f"results-{len(ids)}-batches"
    return f"{stem}.{extension}"
