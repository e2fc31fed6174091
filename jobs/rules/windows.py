"""Calling windows in the recipient's local time: pure functions.

Nothing here reads the clock or the database: every function takes ``now``
(an aware datetime) and the data it needs, so the same code serves the
import (which parks a job outside its window until the next opening), the
retry scheduling, the dial gate and ``explain``, and its tests pin the
instant they ask about.

The rules, intersected:

* the batch's ``calling_window``: local hours (``start`` to ``end``, "24:00"
  allowed as an end) on some days of the week; the default is the federal
  TCPA hours, 08:00 to 21:00 every day (47 CFR § 64.1200(c)(1));
* for US numbers, the calling hours of the recipient's state, taken from the
  area code (jobs/data/us_state_calling_hours.csv, with each row's source;
  jobs/data/us_area_codes.csv);
* the account's holidays: local dates on which nothing is dialled.

A number's zones come from ``phonenumbers.timezone`` unless the job carries
an explicit IANA ``timezone``. A number that spans several zones (some area
codes do) is open only when the window is open in every one of them; a
number whose zone is unknown is never open.
"""

from __future__ import annotations

import csv
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

import phonenumbers
from phonenumbers import timezone as phone_timezone

# Private in phonenumbers; test_windows checks that the zones found with it
# are the ones phonenumbers.timezone gives, for every region and type.
from phonenumbers.phonenumberutil import _GEO_MOBILE_COUNTRIES as GEO_MOBILE_COUNTRIES
from phonenumbers.tzdata import TIMEZONE_DATA, TIMEZONE_LONGEST_PREFIX

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_MINUTES = 24 * 60
DATA = Path(__file__).resolve().parent.parent / "data"
UNKNOWN_ZONE = "Etc/Unknown"
# How far ahead the next opening is looked for: a year covers any holiday
# list; a window that opens on no day within it is reported as never.
HORIZON_DAYS = 370

_HHMM = re.compile(r"^([01][0-9]|2[0-4]):([0-5][0-9])$")


class WindowError(ValueError):
    """Bad input for a window; ``field`` names the part that is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _minutes(value: Any, field: str) -> int:
    match = _HHMM.match(value) if isinstance(value, str) else None
    if match is None:
        raise WindowError(field, f'Enter a time as "HH:MM", got {value!r}.')
    minutes = int(match[1]) * 60 + int(match[2])
    if minutes > DAY_MINUTES:
        raise WindowError(field, f'"24:00" is the latest time, got {value!r}.')
    return minutes


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True)
class Window:
    """Local hours ``[start, end)`` in minutes after midnight, on ``days``
    (``date.weekday()`` numbers)."""

    start: int
    end: int
    days: frozenset[int]

    @classmethod
    def parse(cls, value: Any, field: str = "calling_window") -> Window:
        if not isinstance(value, Mapping):
            raise WindowError(
                field,
                'Expected an object with "start", "end" and "days".',
            )
        unknown = set(value) - {"start", "end", "days"}
        if unknown:
            name = sorted(unknown)[0]
            raise WindowError(f"{field}.{name}", f"Unknown key {name!r}.")
        start = _minutes(value.get("start", "00:00"), f"{field}.start")
        end = _minutes(value.get("end", "24:00"), f"{field}.end")
        if start == DAY_MINUTES:
            raise WindowError(f"{field}.start", '"24:00" is only allowed as an end.')
        if end <= start:
            raise WindowError(
                f"{field}.end",
                f"The end ({_hhmm(end)}) must be after the start ({_hhmm(start)}).",
            )
        raw_days = value.get("days", list(DAYS))
        if not isinstance(raw_days, list) or not raw_days:
            raise WindowError(
                f"{field}.days",
                f"Expected a non-empty list of day names ({', '.join(DAYS)}).",
            )
        days = set()
        for day in raw_days:
            if not isinstance(day, str) or day.lower() not in DAYS:
                raise WindowError(
                    f"{field}.days", f"Unknown day {day!r}; use {', '.join(DAYS)}."
                )
            days.add(DAYS.index(day.lower()))
        return cls(start, end, frozenset(days))

    def as_json(self) -> dict[str, Any]:
        return {
            "start": _hhmm(self.start),
            "end": _hhmm(self.end),
            "days": [DAYS[d] for d in sorted(self.days)],
        }

    def hours_on(self, weekday: int) -> tuple[int, int] | None:
        return (self.start, self.end) if weekday in self.days else None


ALL_DAYS = frozenset(range(7))
FEDERAL_WINDOW = Window(8 * 60, 21 * 60, ALL_DAYS)
ALL_DAY_WINDOW = Window(0, DAY_MINUTES, ALL_DAYS)


def default_calling_window() -> dict[str, Any]:
    """The model default: the federal TCPA hours, 08:00-21:00 every day."""
    return FEDERAL_WINDOW.as_json()


def all_day_calling_window() -> dict[str, Any]:
    return ALL_DAY_WINDOW.as_json()


def configured_default_window() -> dict[str, Any]:
    """The window of a batch created without one, and of one-off jobs:
    CALLING_WINDOW_DEFAULT ("HH:MM-HH:MM", every day; 08:00-21:00 unless an
    operator sets it; the test settings set an all-day window)."""
    from django.conf import settings

    start, _, end = settings.CALLING_WINDOW_DEFAULT.partition("-")
    return Window.parse(
        {"start": start, "end": end}, field="CALLING_WINDOW_DEFAULT"
    ).as_json()


def validate_timezone(value: str, field: str = "timezone") -> str:
    """An IANA zone name, or "" for none; anything else is a WindowError."""
    if value in ("", None):
        return ""
    if not isinstance(value, str) or value not in _zone_names():
        raise WindowError(field, f"{value!r} is not an IANA time zone name.")
    return value


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


@functools.cache
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


# --- the US state table -----------------------------------------------------


@dataclass(frozen=True)
class StateRule:
    state: str
    hours: Mapping[int, tuple[int, int]]  # weekday -> (start, end); absent: closed
    sources: tuple[str, ...]

    def hours_on(self, weekday: int) -> tuple[int, int] | None:
        return self.hours.get(weekday)


def _day_set(spec: str) -> list[int]:
    first, _, last = spec.partition("-")
    a, b = DAYS.index(first), DAYS.index(last or first)
    return list(range(a, b + 1))


@functools.cache
def state_rules() -> dict[str, StateRule]:
    """jobs/data/us_state_calling_hours.csv: the states whose calling hours
    are narrower than the federal ones. A day a state's rows leave out is a
    day with no calls at all (Sundays in several states)."""
    hours: dict[str, dict[int, tuple[int, int]]] = {}
    sources: dict[str, list[str]] = {}
    with (DATA / "us_state_calling_hours.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            state = row["state"]
            span = (_minutes(row["start"], "start"), _minutes(row["end"], "end"))
            for day in _day_set(row["days"]):
                hours.setdefault(state, {})[day] = span
            sources.setdefault(state, []).append(row["source"])
    return {
        state: StateRule(state, days, tuple(dict.fromkeys(sources[state])))
        for state, days in hours.items()
    }


@functools.cache
def area_code_states() -> dict[str, str]:
    with (DATA / "us_area_codes.csv").open(encoding="utf-8") as f:
        return {row["area_code"]: row["state"] for row in csv.DictReader(f)}


# --- the recipient ----------------------------------------------------------


@dataclass(frozen=True)
class Recipient:
    """Where a number is: its zones (empty when unknown) and its US state."""

    zones: tuple[str, ...]
    state: str | None = None

    @property
    def rule(self) -> StateRule | None:
        return state_rules().get(self.state) if self.state else None


GEOGRAPHICAL_TYPES = frozenset({"fixed_line", "fixed_line_or_mobile"})


def _zones(e164: str, country_code: int, number_type: str) -> tuple[str, ...]:
    """What ``phonenumbers.timezone.time_zones_for_number`` answers, from a
    number already classified (no second parse: an import of 100k rows
    pays a few dictionary lookups per row). Unknown zones are left out."""
    geographical = number_type in GEOGRAPHICAL_TYPES or (
        number_type == "mobile" and country_code in GEO_MOBILE_COUNTRIES
    )
    digits = e164[1:] if geographical else str(country_code)
    found: tuple[str, ...] = ()
    for length in range(min(TIMEZONE_LONGEST_PREFIX, len(digits)), 0, -1):
        if digits[:length] in TIMEZONE_DATA:
            found = TIMEZONE_DATA[digits[:length]]
            break
    return tuple(z for z in found if z != UNKNOWN_ZONE and z in _zone_names())


def recipient_of(
    e164: str, region: str, number_type: str, timezone: str = ""
) -> Recipient:
    """The zones of a valid number (its region and libphonenumber number
    type known), or the job's explicit ``timezone``; and, for a US number,
    the state of its area code."""
    state = area_code_states().get(e164[2:5]) if region == "US" else None
    if timezone:
        return Recipient((timezone,), state)
    country_code = phonenumbers.country_code_for_region(region)
    if not country_code:  # non-geographic codes ("001")
        return recipient_for(e164)
    return Recipient(_zones(e164, country_code, number_type), state)


@functools.lru_cache(maxsize=65536)
def recipient_for(e164: str, timezone: str = "") -> Recipient:
    """``recipient_of`` for a number given only in E.164 (parsed here)."""
    try:
        number = phonenumbers.parse(e164)
    except phonenumbers.NumberParseException:
        return Recipient((timezone,) if timezone else ())
    region = phonenumbers.region_code_for_number(number) or ""
    state = area_code_states().get(e164[2:5]) if region == "US" else None
    if timezone:
        return Recipient((timezone,), state)
    zones = phone_timezone.time_zones_for_number(number)
    return Recipient(
        tuple(z for z in zones if z != UNKNOWN_ZONE and z in _zone_names()), state
    )


# --- opening hours ----------------------------------------------------------


def _local_hours(
    window: Window, rule: StateRule | None, day: date, holidays: frozenset[date]
) -> tuple[int, int] | None:
    if day in holidays:
        return None
    hours = window.hours_on(day.weekday())
    if hours is None:
        return None
    if rule is not None:
        limit = rule.hours_on(day.weekday())
        if limit is None:
            return None
        hours = (max(hours[0], limit[0]), min(hours[1], limit[1]))
        if hours[0] >= hours[1]:
            return None
    return hours


def _instant(day: date, minutes: int, tz: ZoneInfo) -> datetime:
    """Local ``day`` at ``minutes`` after midnight (1440: the next midnight),
    in UTC. A time in a spring-forward gap is read with the offset before the
    change (02:30 becomes 03:30), so it is never earlier than meant."""
    if minutes >= DAY_MINUTES:
        day, minutes = day + timedelta(days=1), minutes - DAY_MINUTES
    local = datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=tz)
    return local.astimezone(UTC)


def _intervals(
    window: Window,
    rule: StateRule | None,
    zone_name: str,
    holidays: frozenset[date],
    first: date,
    days: int,
) -> list[tuple[datetime, datetime]]:
    tz = zone(zone_name)
    out = []
    for i in range(days):
        day = first + timedelta(days=i)
        hours = _local_hours(window, rule, day, holidays)
        if hours is not None:
            out.append((_instant(day, hours[0], tz), _instant(day, hours[1], tz)))
    # Adjacent days (an all-day window) join into one interval.
    merged: list[tuple[datetime, datetime]] = []
    for a, b in out:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _intersect(
    left: list[tuple[datetime, datetime]], right: list[tuple[datetime, datetime]]
) -> list[tuple[datetime, datetime]]:
    out, i, j = [], 0, 0
    while i < len(left) and j < len(right):
        a = max(left[i][0], right[j][0])
        b = min(left[i][1], right[j][1])
        if a < b:
            out.append((a, b))
        if left[i][1] < right[j][1]:
            i += 1
        else:
            j += 1
    return out


def open_spans(
    window: Window,
    recipient: Recipient,
    holidays: Iterable[date],
    now: datetime,
    days: int = 8,
) -> list[tuple[datetime, datetime]]:
    """The UTC spans, from the day before ``now`` on, in which the window is
    open in every zone of the recipient; none if the zone is unknown."""
    if not recipient.zones:
        return []
    frozen = frozenset(holidays)
    spans: list[tuple[datetime, datetime]] | None = None
    for name in recipient.zones:
        first = now.astimezone(zone(name)).date() - timedelta(days=1)
        mine = _intervals(window, recipient.rule, name, frozen, first, days + 2)
        spans = mine if spans is None else _intersect(spans, mine)
    return [(a, b) for a, b in spans or [] if b > now]


def next_opening(
    window: Window, recipient: Recipient, holidays: Iterable[date], now: datetime
) -> datetime | None:
    """``now`` if the window is open now, else when it next opens; None if
    it never does (unknown zone, or no opening within a year)."""
    frozen = frozenset(holidays)
    for days in (8, HORIZON_DAYS):
        spans = open_spans(window, recipient, frozen, now, days)
        if spans:
            return max(spans[0][0], now)
    return None


@dataclass(frozen=True)
class Verdict:
    """Whether a recipient may be called at ``now``, and if not, why and
    until when (``code``: outside_window, holiday or unknown_timezone)."""

    open: bool
    code: str = ""
    until: datetime | None = None
    zone: str = ""
    local_now: datetime | None = None

    def detail(self) -> str:
        if self.open:
            return ""
        if self.code == "unknown_timezone":
            return "The number's time zone is unknown; give the job a timezone."
        local = self.local_now.strftime("%a %H:%M") if self.local_now else "?"
        until = self.until.isoformat() if self.until else "never"
        what = "a holiday" if self.code == "holiday" else "outside the calling window"
        return f"{what} in {self.zone} (local time {local}); opens {until}"


def verdict(
    window: Window, recipient: Recipient, holidays: Iterable[date], now: datetime
) -> Verdict:
    """The dial gate's and explain's answer for one recipient at ``now``."""
    if not recipient.zones:
        return Verdict(False, "unknown_timezone")
    frozen = frozenset(holidays)
    opening = next_opening(window, recipient, frozen, now)
    if opening == now:
        return Verdict(True)
    # Name the zone that keeps it closed: the first whose own window is shut.
    closed = recipient.zones[0]
    for name in recipient.zones:
        alone = Recipient((name,), recipient.state)
        if next_opening(window, alone, frozen, now) != now:
            closed = name
            break
    local_now = now.astimezone(zone(closed))
    code = "holiday" if local_now.date() in frozen else "outside_window"
    return Verdict(False, code, opening, closed, local_now)


def parse_holidays(value: Any, field: str = "holidays") -> list[str]:
    """A list of "YYYY-MM-DD" dates, sorted and without repeats."""
    from accounts.dialing import parse_holidays as parse

    try:
        return parse(value)
    except ValueError as error:
        raise WindowError(field, str(error)) from None


def holiday_dates(values: Iterable[str]) -> frozenset[date]:
    return frozenset(date.fromisoformat(v) for v in values)
