"""Bulk job import: a JSON list or a CSV file becomes jobs of one batch.

All or nothing: every row is validated first, and if any row is bad nothing
is written and every bad row is reported with its row number and reasons.

- Phone numbers are parsed with ``phonenumbers`` (national numbers use
  settings.DEFAULT_PHONE_REGION), must be valid numbers, and are stored in
  E.164. A number whose type or country the account may not call is a bad
  row (accounts/dialing.py).
- A CSV is read row by row from its file (``rows_from_csv``), and the row
  limit stops the reading: memory holds a chunk of the file, not the file.
- A number may appear once per batch: a duplicate inside the upload or of an
  existing job of the batch is a bad row (the database's unique constraint
  backs this up). Imports into one batch are serialised with an advisory lock
  so that two concurrent uploads cannot both pass the duplicate check.
- ``scheduled_at`` in the future makes a ``scheduled`` job; otherwise the job
  is ``pending``.

Speed matters (100k-row CSVs): one phonenumbers parse per row, no per-row
queries, no ``full_clean``; rows are inserted with COPY (``bulk_create`` in
chunks on SQLite).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sized
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

import phonenumbers
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from phonenumbers.phonemetadata import PhoneMetadata
from phonenumbers.phonenumberutil import (
    _extract_country_code,
    _is_number_matching_desc,
    _number_type_helper,
)

from accounts.dialing import number_type_name, refusal
from accounts.models import Account
from batches.models import Batch
from callcenter.actor import Actor
from callcenter.exceptions import BatchCancelledError, BatchDeletedError, DomainError
from jobs.models import Job, JobStatus
from jobs.notify import notify_jobs_available
from jobs.rules.calling_window import ImportWindows
from jobs.rules.windows import (
    Recipient,
    WindowError,
    recipient_of,
    validate_timezone,
)
from jobs.signals import send_batch_got_work

logger = logging.getLogger(__name__)

ROW_FIELDS = (
    "phone_number",
    "variables",
    "scheduled_at",
    "priority",
    "timezone",
    "consent_at",
)
CSV_RESERVED = ("phone_number", "scheduled_at", "priority", "timezone", "consent_at")
PRIORITY_MIN, PRIORITY_MAX = -1000, 1000
MAX_VARIABLES = 100
MAX_VARIABLE_KEY = 100
MAX_VARIABLE_VALUE = 5000
INSERT_CHUNK = 5000
# Batches with at most this many jobs have their numbers read up front, which
# lets validation and COPY overlap.
IMPORT_PREFETCH_LIMIT = 200_000
NULL = "\\N"  # COPY's text-format NULL
# (country code, first digits) -> region, for bulk validation.
RegionCache = dict[tuple[int | None, str], str | None]
_PUNCTUATION = str.maketrans("", "", " -().\u00a0")


class ImportTooLargeError(DomainError):
    code = "too_many_rows"
    status_code = 413


class ImportConflictError(DomainError):
    code = "import_conflict"


class ImportFormatError(DomainError):
    """The upload as a whole cannot be read (not CSV, no phone_number column)."""

    code = "invalid_upload"
    status_code = 400


@dataclass
class RowError:
    row: int
    phone_number: str | None
    errors: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "phone_number": self.phone_number,
            "errors": self.errors,
        }


@dataclass
class ImportResult:
    created: int = 0
    pending: int = 0
    scheduled: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(frozen=True)
class ImportRow:
    """One row before validation. ``row`` is what error reports call it."""

    row: int
    data: Mapping[str, Any]


# --- Phone numbers ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Phone:
    """A valid number: E.164, its region (ISO 3166 alpha-2, or "001" for a
    non-geographic code) and its type (accounts.dialing.NumberType)."""

    e164: str
    region: str
    number_type: str


def parse_phone(
    raw: str, region: str, regions: RegionCache | None = None
) -> Phone | None:
    """The number, classified, or None if it is not a valid phone number.

    ``regions`` is an optional cache of the region of a number's first digits,
    for bulk use: finding the region is half the cost of validation for +1
    numbers (25 NANP regions are tried in turn). A cached region is only a
    shortcut: if the number is not valid there, the full check decides.
    """
    text = raw.strip()
    if not text:
        return None
    compact = text.translate(_PUNCTUATION)
    fast = compact.startswith("+") and compact[1:].isdigit() and compact.isascii()
    try:
        if fast:
            # Fast path for numbers that are already international: about
            # twice as fast as a full parse, and most uploads look like this.
            cc, national = _extract_country_code(compact[1:])
            if not cc or not national:
                return None
            number = phonenumbers.PhoneNumber(
                country_code=cc, national_number=int(national)
            )
            zeros = len(national) - len(national.lstrip("0"))
            if zeros:
                number.italian_leading_zero = True
                if zeros > 1:
                    number.number_of_leading_zeros = zeros
        else:
            number = phonenumbers.parse(text, region)
    except (phonenumbers.NumberParseException, ValueError):
        return None
    found = None
    if regions is not None:
        key = (number.country_code, str(number.national_number)[:6])
        if key not in regions:
            regions[key] = phonenumbers.region_code_for_number(number)
        cached = regions[key]
        if cached:
            found = _classify(number, cached)
    if found is None:
        # What is_valid_number decides: the number's region, then a type.
        where = phonenumbers.region_code_for_number(number)
        found = _classify(number, where) if where else None
    if found is None:
        return None
    where, kind = found
    if fast:
        e164 = compact  # already +<country code><national significant number>
    else:
        e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return Phone(e164, where, number_type_name(kind))


def normalize_phone(
    raw: str, region: str, regions: RegionCache | None = None
) -> str | None:
    """The number in E.164, or None if it is not a valid phone number."""
    phone = parse_phone(raw, region, regions)
    return phone.e164 if phone else None


def _classify(number: phonenumbers.PhoneNumber, region: str) -> tuple[str, int] | None:
    """(region, number type) if the number is valid in ``region``, else None:
    it matches the region's general pattern and one number type's pattern,
    which is what is_valid_number_for_region decides, and the type is what
    number_type would answer (both call the same helper)."""
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(
        number.country_code or 0, region
    )
    if metadata is None:
        return None
    nsn = phonenumbers.national_significant_number(number)
    if not _is_number_matching_desc(nsn, metadata.general_desc):
        return None
    kind = _number_type_helper(nsn, metadata)
    if kind == phonenumbers.PhoneNumberType.UNKNOWN:
        return None
    return region, kind


# --- Row validation ----------------------------------------------------------


def _check_text(value: str) -> str | None:
    if "\x00" in value:
        return "must not contain NUL characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode text"
    return None


def _check_variables(value: Any) -> list[str]:
    if not isinstance(value, dict):
        return ["variables: must be an object of name -> value."]
    if len(value) > MAX_VARIABLES:
        return [f"variables: at most {MAX_VARIABLES} variables."]
    errors: list[str] = []

    def walk(name: str, item: Any, depth: int) -> None:
        if depth > 5:
            errors.append(f"variables.{name}: nested too deeply.")
        elif isinstance(item, str):
            problem = _check_text(item)
            if problem:
                errors.append(f"variables.{name}: {problem}.")
            elif len(item) > MAX_VARIABLE_VALUE:
                errors.append(
                    f"variables.{name}: at most {MAX_VARIABLE_VALUE} characters."
                )
        elif isinstance(item, float) and not math.isfinite(item):
            errors.append(f"variables.{name}: must be a finite number.")
        elif isinstance(item, dict):
            for k, v in item.items():
                problem = _check_text(k)
                if problem:
                    errors.append(f"variables.{name}: key {problem}.")
                else:
                    walk(f"{name}.{k}", v, depth + 1)
        elif isinstance(item, list):
            for i, v in enumerate(item):
                walk(f"{name}[{i}]", v, depth + 1)

    for key, item in value.items():
        problem = _check_text(key)
        if problem or not key or len(key) > MAX_VARIABLE_KEY:
            errors.append(
                f"variables: names must be 1 to {MAX_VARIABLE_KEY} characters"
                + (f" and {problem}" if problem else "")
                + "."
            )
            continue
        walk(key, item, 0)
    return errors


def _parse_scheduled_at(
    value: Any, name: str = "scheduled_at"
) -> tuple[datetime | None, str | None]:
    if value is None or value == "":
        return None, None
    if not isinstance(value, str):
        return None, f"{name}: must be an ISO 8601 date-time string."
    try:
        parsed = parse_datetime(value.strip())
    except ValueError:
        parsed = None
    if parsed is None:
        return None, f"{name}: must be an ISO 8601 date-time."
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed)
    if not (1970 <= parsed.year <= 9998):
        return None, f"{name}: year out of range."
    return parsed, None


def _parse_priority(value: Any, *, from_text: bool) -> tuple[int, str | None]:
    if value is None or value == "":
        return 0, None
    if from_text and isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            return 0, "priority: must be an integer."
    if isinstance(value, bool) or not isinstance(value, int):
        return 0, "priority: must be an integer."
    if not PRIORITY_MIN <= value <= PRIORITY_MAX:
        return 0, f"priority: must be between {PRIORITY_MIN} and {PRIORITY_MAX}."
    return value, None


@dataclass
class _Valid:
    phone: str
    variables: dict[str, Any]
    scheduled_at: datetime | None
    priority: int
    timezone: str = ""
    recipient: Recipient | None = None
    consent_at: datetime | None = None


def _validate(
    row: ImportRow,
    *,
    region: str,
    from_text: bool,
    regions: RegionCache,
    rules: _DialRules,
) -> tuple[_Valid | None, RowError | None]:
    data = row.data
    errors: list[str] = []
    if not isinstance(data, Mapping):
        return None, RowError(row.row, None, ["Each row must be an object."])
    raw_phone = data.get("phone_number")
    shown_phone = raw_phone if isinstance(raw_phone, str) else None
    if from_text:
        # CSV values are strings decoded from UTF-8 in a file without NUL
        # (rows_from_csv checks), and the columns were checked once on the
        # header: only the length of each value is left to check.
        variables = {k: v for k, v in data.items() if k not in CSV_RESERVED}
        for key, value in variables.items():
            if len(value) > MAX_VARIABLE_VALUE:
                errors.append(
                    f"variables.{key}: at most {MAX_VARIABLE_VALUE} characters."
                )
    else:
        unknown = sorted(str(k) for k in data if k not in ROW_FIELDS)
        if unknown:
            errors.append(f"Unknown fields: {', '.join(unknown)}.")
        variables = data.get("variables", {})
        if variables is None:
            variables = {}
    phone = None
    zone, problem = _parse_timezone(data.get("timezone"))
    if problem:
        errors.append(problem)
    recipient = None
    if raw_phone is None or raw_phone == "":
        errors.append("phone_number: this field is required.")
    elif not isinstance(raw_phone, str):
        errors.append("phone_number: must be a string.")
    elif len(raw_phone) > 40 or _check_text(raw_phone):
        errors.append("phone_number: not a valid phone number.")
    else:
        parsed = parse_phone(raw_phone, region, regions)
        if parsed is None:
            errors.append(f"phone_number: {raw_phone!r} is not a valid phone number.")
        elif refused := rules.refusal(parsed):
            errors.append(f"phone_number: {parsed.e164}: {refused}")
        else:
            phone = parsed.e164
            recipient = recipient_of(
                parsed.e164, parsed.region, parsed.number_type, zone
            )
            if not recipient.zones and not problem:
                errors.append(
                    f"timezone: the time zone of {parsed.e164} is unknown; give "
                    "the row an IANA timezone (e.g. America/Chicago)."
                )
    if not from_text:
        errors.extend(_check_variables(variables))
    scheduled_at, problem = _parse_scheduled_at(data.get("scheduled_at"))
    if problem:
        errors.append(problem)
    priority, problem = _parse_priority(data.get("priority"), from_text=from_text)
    if problem:
        errors.append(problem)
    consent_at, problem = _parse_scheduled_at(data.get("consent_at"), "consent_at")
    if problem:
        errors.append(problem)
    if errors or phone is None:
        return None, RowError(row.row, shown_phone, errors)
    valid = _Valid(
        phone, variables, scheduled_at, priority, zone, recipient, consent_at
    )
    return valid, None


def _parse_timezone(value: Any) -> tuple[str, str | None]:
    if value is None or value == "":
        return "", None
    if not isinstance(value, str):
        return "", "timezone: must be a string."
    try:
        return validate_timezone(value.strip()), None
    except WindowError as error:
        return "", f"timezone: {error.message}"


# --- Reading uploads ---------------------------------------------------------


def rows_from_json(items: Iterable[Any]) -> list[ImportRow]:
    """JSON items are numbered from 1."""
    return [ImportRow(i, item) for i, item in enumerate(items, start=1)]


def rows_from_csv(content: bytes | str | IO[bytes]) -> Iterator[ImportRow]:
    """CSV rows are numbered by line, the header being line 1.

    Columns: ``phone_number`` (required), optional ``scheduled_at``,
    ``priority``, ``timezone`` and ``consent_at``; every other column becomes
    a variable of the job.

    The header is read and checked at once (ImportFormatError); the rows are
    then read one at a time as the import consumes them, so a file opened
    from disk is never held in memory whole.
    """
    if isinstance(content, bytes):
        content = io.BytesIO(content)
    if isinstance(content, str):
        text: IO[str] = io.StringIO(content.removeprefix("\ufeff"), newline="")
    else:
        text = io.TextIOWrapper(content, encoding="utf-8-sig", newline="")
    lines = _checked_lines(text)
    reader = csv.reader(lines)
    with _csv_errors():
        header = next(reader, None)
    if not header:
        raise ImportFormatError("The CSV file is empty; it needs a header row.")
    header = [h.strip() for h in header]
    if "phone_number" not in header:
        raise ImportFormatError("The CSV header needs a phone_number column.")
    if any(not h for h in header):
        raise ImportFormatError("Every CSV column needs a name in the header.")
    if len(set(header)) != len(header):
        raise ImportFormatError("The CSV header repeats a column name.")
    free = [h for h in header if h not in CSV_RESERVED]
    if len(free) > MAX_VARIABLES:
        raise ImportFormatError(
            f"At most {MAX_VARIABLES} variable columns besides phone_number, "
            "scheduled_at, priority, timezone and consent_at."
        )
    if any(len(h) > MAX_VARIABLE_KEY for h in free):
        raise ImportFormatError(
            f"Column names are at most {MAX_VARIABLE_KEY} characters."
        )
    return _csv_rows(reader, header)


def _checked_lines(text: IO[str]) -> Iterator[str]:
    """The file's lines, refusing a file that is not UTF-8 or holds NUL."""
    try:
        for line in text:
            if "\x00" in line:
                raise ImportFormatError("The CSV file contains NUL characters.")
            yield line
    except UnicodeDecodeError:
        raise ImportFormatError("The CSV file must be UTF-8 encoded.") from None


@contextlib.contextmanager
def _csv_errors() -> Iterator[None]:
    try:
        yield
    except csv.Error as exc:
        raise ImportFormatError(f"The CSV file cannot be read: {exc}") from None


def _csv_rows(reader: Any, header: list[str]) -> Iterator[ImportRow]:
    width = len(header)
    with _csv_errors():
        for number, values in enumerate(reader, start=2):
            if not values or (len(values) == 1 and not values[0].strip()):
                continue  # blank line
            if len(values) != width:
                yield ImportRow(
                    number, {"__width__": f"has {len(values)} columns, not {width}"}
                )
                continue
            yield ImportRow(number, dict(zip(header, values, strict=True)))


# --- The service -------------------------------------------------------------


def _lock_batch_for_import(batch: Batch) -> Batch:
    """Serialise imports into this batch, and re-read its state.

    An advisory lock and not a row lock: a row lock on the batch would block
    the workers' claims (FOR SHARE) for the whole import.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s, %s)", [0x6A6F6273, batch.pk % 2**31]
            )
    current = Batch.all_objects.get(pk=batch.pk)
    if current.deleted_at is not None:
        raise BatchDeletedError(f"Batch {current.batch_id} has been deleted.")
    if current.cancelled_at is not None:
        raise BatchCancelledError(
            f"Batch {current.batch_id} is cancelled; it takes no new jobs."
        )
    return current


class _RowsInvalid(Exception):
    """Raised inside the COPY to abandon it: the transaction rolls back."""


def jobs_import(
    *,
    batch: Batch,
    rows: Iterable[ImportRow],
    actor: Actor,
    from_text: bool = False,
    max_rows: int | None = None,
) -> ImportResult:
    """Validate every row and insert all of them, or none.

    ``from_text`` marks CSV rows: values are strings and free columns are
    variables. Returns the counts, or the row errors (nothing written).

    When the batch holds few jobs (the usual case: a new batch), its numbers
    are read first and rows are validated while they stream into COPY, so
    PostgreSQL indexes one chunk while Python validates the next; the first
    bad row stops the writing, validation goes on to report every bad row,
    and the transaction is rolled back. A batch with many jobs is checked in
    two phases instead: validate everything, look the numbers up, then write.
    """
    limit = max_rows or settings.API_IMPORT_MAX_ROWS
    if isinstance(rows, Sized):
        if len(rows) > limit:
            raise ImportTooLargeError(
                f"An import takes at most {limit} rows; this one has {len(rows)}."
            )
        if not len(rows):
            raise ImportFormatError("There are no rows to import.")
    rows = _at_most(rows, limit)
    result = ImportResult()
    now = timezone.now()
    try:
        with transaction.atomic():
            current = _lock_batch_for_import(batch)
            common = {
                "account_id": current.account_id,
                "batch_id": current.pk,
                "max_attempts": settings.JOB_DEFAULT_MAX_ATTEMPTS,
                "created_at": now,
                "updated_at": now,
            }
            rules = _DialRules.of_account(current.account_id)
            existing = _existing_numbers_if_few(current)
            if existing is None:
                good = list(
                    _checked_rows(rows, from_text, result, rules, existing=set())
                )
                taken = _existing_numbers(current, [item.phone for _, item in good])
                for row_number, item in good:
                    if item.phone in taken:
                        result.errors.append(_already_in_batch(row_number, item))
                if result.errors:
                    raise _RowsInvalid
                checked: Iterable[tuple[int, _Valid]] = good
            else:
                checked = _checked_rows(
                    rows, from_text, result, rules, existing=existing
                )
            windows = ImportWindows(current, now)
            try:
                _insert_jobs(_as_values(checked, now, result, windows), common, result)
            except IntegrityError:
                # Only a writer that bypasses this service's lock can get here.
                raise ImportConflictError(
                    "Some of these numbers were added to the batch at the same "
                    "time by another writer; nothing was imported. Retry."
                ) from None
            if not result.created and not result.errors:
                raise ImportFormatError("There are no rows to import.")
            # New work: a batch marked completed must become claimable again.
            send_batch_got_work(
                batch_id=current.pk, actor=actor, reason="jobs were imported"
            )
            if result.pending:
                notify_jobs_available()
    except _RowsInvalid:
        result.created = result.pending = result.scheduled = 0
        result.errors.sort(key=lambda e: e.row)
        return result
    batch.completed_at = None
    logger.info(
        "jobs imported",
        extra={
            "action": "jobs.imported",
            "batch_id": batch.batch_id,
            "jobs_created": result.created,
            "jobs_scheduled": result.scheduled,
            "source": actor.source,
            "actor": actor.display or "-",
        },
    )
    return result


def _already_in_batch(row_number: int, item: _Valid) -> RowError:
    return RowError(
        row_number,
        item.phone,
        [f"phone_number: {item.phone} is already a job of this batch."],
    )


def _at_most(rows: Iterable[ImportRow], limit: int) -> Iterator[ImportRow]:
    """The rows, refusing the import (413) once the limit is passed: a
    streamed file is refused without reading the rest of it."""
    for count, row in enumerate(rows, start=1):
        if count > limit:
            raise ImportTooLargeError(
                f"An import takes at most {limit} rows; this one has more."
            )
        yield row


@dataclass(frozen=True)
class _DialRules:
    """The account's allowed number types and countries (accounts.dialing)."""

    number_types: frozenset[str]
    countries: frozenset[str]

    @classmethod
    def of_account(cls, account_id: int) -> _DialRules:
        types, countries = Account.objects.values_list(
            "allowed_number_types", "allowed_countries"
        ).get(pk=account_id)
        return cls(frozenset(types), frozenset(countries))

    def refusal(self, phone: Phone) -> str | None:
        return refusal(
            region=phone.region,
            number_type=phone.number_type,
            allowed_number_types=self.number_types,
            allowed_countries=self.countries,
        )


def _checked_rows(
    rows: Iterable[ImportRow],
    from_text: bool,
    result: ImportResult,
    rules: _DialRules,
    *,
    existing: set[str],
) -> Iterator[tuple[int, _Valid]]:
    """Yield the good rows; record the bad ones in ``result.errors``."""
    region = settings.DEFAULT_PHONE_REGION
    first_seen: dict[str, int] = {}
    regions: RegionCache = {}
    for row in rows:
        if "__width__" in row.data:
            result.errors.append(
                RowError(row.row, None, [f"Row {row.data['__width__']}."])
            )
            continue
        item, error = _validate(
            row, region=region, from_text=from_text, regions=regions, rules=rules
        )
        if error:
            result.errors.append(error)
            continue
        assert item is not None
        if item.phone in first_seen:
            result.errors.append(
                RowError(
                    row.row,
                    item.phone,
                    [
                        f"phone_number: {item.phone} is already in this upload "
                        f"(row {first_seen[item.phone]})."
                    ],
                )
            )
            continue
        first_seen[item.phone] = row.row
        if item.phone in existing:
            result.errors.append(_already_in_batch(row.row, item))
            continue
        yield row.row, item


def _as_values(
    checked: Iterable[tuple[int, _Valid]],
    now: datetime,
    result: ImportResult,
    windows: ImportWindows,
) -> Iterator[dict[str, Any]]:
    """The rows to write. A job whose calling window is closed at its start
    (now, or its ``scheduled_at``) is written ``scheduled`` at the window's
    next opening: it stays out of the claim index until then."""
    for row_number, item in checked:
        assert item.recipient is not None
        when = windows.opening(item.recipient, item.scheduled_at)
        if when is None:
            result.errors.append(
                RowError(
                    row_number,
                    item.phone,
                    [
                        "phone_number: the batch's calling window never opens "
                        f"for {item.phone} within a year (its zones: "
                        f"{', '.join(item.recipient.zones)})."
                    ],
                )
            )
            continue
        scheduled = when > now
        if scheduled:
            result.scheduled += 1
        else:
            result.pending += 1
        result.created += 1
        yield {
            "phone_number": item.phone,
            "variables": item.variables,
            "status": JobStatus.SCHEDULED if scheduled else JobStatus.PENDING,
            "priority": item.priority,
            "scheduled_at": when if scheduled else item.scheduled_at,
            "timezone": item.timezone,
            "consent_at": item.consent_at,
        }


def _existing_numbers_if_few(batch: Batch) -> set[str] | None:
    """All of the batch's numbers, or None if it has more than
    IMPORT_PREFETCH_LIMIT jobs (then they are looked up by number)."""
    numbers = list(
        Job.objects.filter(batch_id=batch.pk)
        .order_by()
        .values_list("phone_number", flat=True)[: IMPORT_PREFETCH_LIMIT + 1]
    )
    if len(numbers) > IMPORT_PREFETCH_LIMIT:
        return None
    return set(numbers)


def _existing_numbers(batch: Batch, phones: list[str]) -> set[str]:
    if connection.vendor == "postgresql":
        # One array parameter instead of 100k placeholders.
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT phone_number FROM {Job._meta.db_table} "
                "WHERE batch_id = %s AND phone_number = ANY(%s)",
                [batch.pk, phones],
            )
            return {row[0] for row in cursor.fetchall()}
    found: set[str] = set()
    for start in range(0, len(phones), 500):
        found.update(
            Job.objects.filter(
                batch_id=batch.pk, phone_number__in=phones[start : start + 500]
            ).values_list("phone_number", flat=True)
        )
    return found


def _insert_jobs(
    values: Iterable[dict[str, Any]], common: dict[str, Any], result: ImportResult
) -> None:
    """Insert the jobs: COPY on PostgreSQL, bulk_create elsewhere.

    ``values`` is consumed to the end even after a bad row shows up in
    ``result.errors`` (so that every bad row is reported), but nothing more is
    written; then _RowsInvalid abandons the COPY and the transaction.

    COPY with pre-rendered text lines is several times faster than a
    multi-row INSERT for 100k rows. Every other column gets its model
    default, read from the model, so a field added to Job later is filled in
    here too.
    """
    if connection.vendor != "postgresql":
        jobs = [Job(**common, **v) for v in values]
        if result.errors:
            raise _RowsInvalid
        for start in range(0, len(jobs), INSERT_CHUNK):
            Job.objects.bulk_create(jobs[start : start + INSERT_CHUNK])
        return
    fields = [f for f in Job._meta.concrete_fields if not f.primary_key]
    column_of = {f.attname: str(f.column) for f in fields}
    per_row = [
        "phone_number",
        "variables",
        "status",
        "priority",
        "scheduled_at",
        "timezone",
        "consent_at",
    ]
    fixed = [f for f in fields if f.attname not in per_row]
    suffix = "\t".join(
        _copy_text(
            f,
            common[f.attname] if f.attname in common else f.get_default(),
        )
        for f in fixed
    )
    columns = ", ".join(
        connection.ops.quote_name(column_of[c])
        for c in [*per_row, *(f.attname for f in fixed)]
    )
    table = connection.ops.quote_name(Job._meta.db_table)
    dumps = json.dumps
    # wrap_database_errors: the raw psycopg COPY raises psycopg's exceptions;
    # callers expect Django's (IntegrityError for a duplicate).
    with (
        connection.wrap_database_errors,
        connection.cursor() as cursor,
        cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy,
    ):
        lines: list[str] = []
        for row in values:
            if result.errors:
                lines.clear()
                continue
            when = row["scheduled_at"]
            consent = row["consent_at"]
            lines.append(
                f"{_escape(row['phone_number'])}\t"
                f"{_escape(dumps(row['variables']))}\t"
                f"{row['status']}\t{int(row['priority'])}\t"
                f"{NULL if when is None else when.isoformat()}\t"
                f"{_escape(row['timezone'])}\t"
                f"{NULL if consent is None else consent.isoformat()}\t{suffix}\n"
            )
            if len(lines) >= INSERT_CHUNK:
                copy.write("".join(lines))
                lines.clear()
        if result.errors:
            raise _RowsInvalid
        if lines:
            copy.write("".join(lines))


def _escape(text: str) -> str:
    """COPY text format: backslash, tab, newline and carriage return."""
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        return (
            text.replace("\\", "\\\\")
            .replace("\t", "\\t")
            .replace("\n", "\\n")
            .replace("\r", "\\r")
        )
    return text


def _copy_text(field, value: Any) -> str:
    if value is None:
        return NULL
    if field.get_internal_type() == "JSONField":
        return _escape(json.dumps(value))
    if isinstance(value, bool):
        return "t" if value else "f"
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return _escape(str(value))
