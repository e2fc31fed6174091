"""Calling windows (jobs/rules/windows.py): pure functions, an injected now.

No database, no clock: every test names the instant it asks about.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from jobs.rules.windows import (
    ALL_DAY_WINDOW,
    FEDERAL_WINDOW,
    Recipient,
    Window,
    WindowError,
    area_code_states,
    default_calling_window,
    next_opening,
    parse_holidays,
    recipient_for,
    state_rules,
    validate_timezone,
    verdict,
)

NY = ZoneInfo("America/New_York")
LA = ZoneInfo("America/Los_Angeles")


def at(zone, *args):
    return datetime(*args, tzinfo=zone).astimezone(UTC)


def window(**kw):
    return Window.parse(kw)


# --- parsing -----------------------------------------------------------------


def test_default_window_is_the_federal_tcpa_hours():
    assert default_calling_window() == {
        "start": "08:00",
        "end": "21:00",
        "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
    }
    assert Window.parse(default_calling_window()) == FEDERAL_WINDOW


def test_all_day_window_allows_24_00_as_end():
    assert window(start="00:00", end="24:00") == ALL_DAY_WINDOW


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"start": "09:00", "end": "08:00"}, "calling_window.end"),
        ({"start": "09:00", "end": "09:00"}, "calling_window.end"),
        ({"start": "9am", "end": "17:00"}, "calling_window.start"),
        ({"start": "08:00", "end": "24:01"}, "calling_window.end"),
        ({"start": "24:00", "end": "24:00"}, "calling_window.start"),
        (
            {"start": "08:00", "end": "17:00", "days": ["mon", "funday"]},
            "calling_window.days",
        ),
        ({"start": "08:00", "end": "17:00", "days": []}, "calling_window.days"),
        ({"start": "08:00", "end": "17:00", "days": "mon"}, "calling_window.days"),
        ({"start": "08:00", "end": "17:00", "zone": "UTC"}, "calling_window.zone"),
        ("08:00-17:00", "calling_window"),
    ],
)
def test_bad_windows_name_the_field(value, field):
    with pytest.raises(WindowError) as error:
        Window.parse(value)
    assert error.value.field == field


def test_days_are_case_insensitive_and_round_trip():
    parsed = window(start="08:30", end="17:00", days=["SAT", "mon"])
    assert parsed.as_json() == {
        "start": "08:30",
        "end": "17:00",
        "days": ["mon", "sat"],
    }


def test_timezone_and_holidays_validation():
    assert validate_timezone("Europe/Madrid") == "Europe/Madrid"
    assert validate_timezone("") == ""
    for bad in ("Mars/Olympus", "europe/madrid", "+01:00"):
        with pytest.raises(WindowError) as error:
            validate_timezone(bad)
        assert error.value.field == "timezone"
    assert parse_holidays(["2026-12-25", "2026-01-01", "2026-12-25"]) == [
        "2026-01-01",
        "2026-12-25",
    ]
    for bad in (["2026-13-01"], ["20261225"], [20261225], "2026-12-25"):
        with pytest.raises(WindowError) as error:
            parse_holidays(bad)
        assert error.value.field == "holidays"


# --- the data tables ---------------------------------------------------------


def test_state_table_has_the_issue_examples_with_sources():
    rules = state_rules()
    for state in ("FL", "OK"):
        assert all(rules[state].hours_on(d) == (480, 1200) for d in range(7))
        assert rules[state].sources
    # Sunday limits: no calls at all, or later starts.
    assert rules["AL"].hours_on(6) is None
    assert rules["LA"].hours_on(6) is None
    assert rules["TX"].hours_on(6) == (12 * 60, 21 * 60)
    assert rules["PA"].hours_on(6) == (13 * 60 + 30, 21 * 60)
    assert all(rule.sources for rule in rules.values())


def test_area_codes_map_to_states():
    codes = area_code_states()
    assert codes["305"] == "FL"
    assert codes["405"] == "OK"
    assert codes["212"] == "NY"
    assert codes["415"] == "CA"
    assert len(set(codes.values())) >= 50


def test_recipient_from_the_number():
    assert recipient_for("+13055550100") == Recipient(("America/New_York",), "FL")
    assert recipient_for("+14155550123") == Recipient(("America/Los_Angeles",), "CA")
    # Idaho's area code spans two zones.
    assert set(recipient_for("+12085550100").zones) == {
        "America/Boise",
        "America/Los_Angeles",
    }
    # Canada: a zone, no US state.
    assert recipient_for("+14165550100").state is None
    assert recipient_for("+34912345678").zones == ("Europe/Madrid",)
    # An explicit timezone replaces the number's zones; the state stays.
    assert recipient_for("+13055550100", "America/Chicago") == Recipient(
        ("America/Chicago",), "FL"
    )


# --- opening hours -----------------------------------------------------------

CA = Recipient(("America/Los_Angeles",), "CA")
FL = Recipient(("America/New_York",), "FL")


def test_open_inside_the_window_in_the_recipients_zone():
    now = at(LA, 2026, 3, 4, 8, 0)  # a Wednesday, 08:00 in California
    assert verdict(FEDERAL_WINDOW, CA, [], now).open
    assert verdict(FEDERAL_WINDOW, CA, [], now - timedelta(seconds=1)).until == now
    # 20:59:59 open, 21:00 closed; the next opening is 08:00 the next day.
    evening = at(LA, 2026, 3, 4, 21, 0)
    assert verdict(FEDERAL_WINDOW, CA, [], evening - timedelta(seconds=1)).open
    closed = verdict(FEDERAL_WINDOW, CA, [], evening)
    assert not closed.open
    assert closed.code == "outside_window"
    assert closed.until == at(LA, 2026, 3, 5, 8, 0)
    assert closed.zone == "America/Los_Angeles"
    assert closed.local_now.hour == 21
    assert "America/Los_Angeles" in closed.detail()


def test_state_rule_narrows_the_window():
    # Florida: 20:30 local is inside 08-21 but outside Florida's 08-20.
    now = at(NY, 2026, 3, 4, 20, 30)
    assert verdict(FEDERAL_WINDOW, Recipient(("America/New_York",), "NY"), [], now).open
    closed = verdict(FEDERAL_WINDOW, FL, [], now)
    assert not closed.open
    assert closed.until == at(NY, 2026, 3, 5, 8, 0)
    # The state rules apply to an all-day window too.
    assert not verdict(ALL_DAY_WINDOW, FL, [], at(NY, 2026, 3, 4, 3, 0)).open


def test_sunday_limits():
    texas = Recipient(("America/Chicago",), "TX")
    chicago = ZoneInfo("America/Chicago")
    sunday_morning = at(chicago, 2026, 3, 8, 10, 0)
    closed = verdict(FEDERAL_WINDOW, texas, [], sunday_morning)
    assert closed.until == at(chicago, 2026, 3, 8, 12, 0)
    alabama = Recipient(("America/Chicago",), "AL")
    # Saturday 20:00 in Alabama: closed until Monday 08:00.
    saturday = at(chicago, 2026, 3, 7, 20, 0)
    assert verdict(ALL_DAY_WINDOW, alabama, [], saturday).until == at(
        chicago, 2026, 3, 9, 8, 0
    )


def test_days_of_the_week():
    weekdays = window(
        start="09:00", end="17:00", days=["mon", "tue", "wed", "thu", "fri"]
    )
    friday_evening = at(LA, 2026, 3, 6, 17, 0)
    assert next_opening(weekdays, CA, [], friday_evening) == at(LA, 2026, 3, 9, 9, 0)


def test_all_day_window_is_always_open_without_a_state_rule():
    for hour in range(24):
        assert verdict(ALL_DAY_WINDOW, CA, [], at(LA, 2026, 11, 1, hour, 30)).open


def test_holidays_close_the_whole_local_day():
    christmas = date(2026, 12, 25)
    now = at(LA, 2026, 12, 25, 12, 0)
    closed = verdict(FEDERAL_WINDOW, CA, [christmas], now)
    assert closed.code == "holiday"
    assert closed.until == at(LA, 2026, 12, 26, 8, 0)
    # The day before, the evening closes until after the holiday.
    assert next_opening(
        FEDERAL_WINDOW, CA, [christmas], at(LA, 2026, 12, 24, 22, 0)
    ) == at(LA, 2026, 12, 26, 8, 0)
    # A long run of holidays is looked through (up to a year).
    many = [date(2026, 12, 25) + timedelta(days=i) for i in range(40)]
    assert next_opening(FEDERAL_WINDOW, CA, many, now) == at(LA, 2027, 2, 3, 8, 0)


def test_multi_zone_number_needs_every_zone_open():
    idaho = recipient_for("+12085550100")  # Boise (Mountain) and Los Angeles
    boise = ZoneInfo("America/Boise")
    # 08:30 in Boise is 07:30 in Los Angeles: closed until 08:00 Pacific.
    now = at(boise, 2026, 3, 4, 8, 30)
    closed = verdict(FEDERAL_WINDOW, idaho, [], now)
    assert not closed.open
    assert closed.zone == "America/Los_Angeles"
    assert closed.until == at(LA, 2026, 3, 4, 8, 0)
    # 20:30 in Los Angeles is 21:30 in Boise: closed until 08:00 Pacific the
    # next day (09:00 in Boise), when both are open.
    late = at(LA, 2026, 3, 4, 20, 30)
    closed = verdict(FEDERAL_WINDOW, idaho, [], late)
    assert closed.zone == "America/Boise"
    assert closed.until == at(LA, 2026, 3, 5, 8, 0)
    assert verdict(FEDERAL_WINDOW, idaho, [], at(LA, 2026, 3, 4, 19, 59)).open
    # A holiday in either zone's local date closes it.
    edge = at(boise, 2026, 3, 5, 0, 30)  # 3/5 in Boise, still 3/4 in LA
    assert next_opening(ALL_DAY_WINDOW, idaho, [date(2026, 3, 5)], edge) == at(
        LA, 2026, 3, 6, 0, 0
    )


def test_windows_that_never_overlap_never_open():
    # 08:00-09:00 in Tokyo and in New York never overlap.
    far = Recipient(("Asia/Tokyo", "America/New_York"))
    early = window(start="08:00", end="09:00")
    assert next_opening(early, far, [], at(NY, 2026, 3, 4, 12, 0)) is None


def test_unknown_zone_is_never_open():
    unknown = Recipient(())
    result = verdict(ALL_DAY_WINDOW, unknown, [], datetime(2026, 3, 4, tzinfo=UTC))
    assert not result.open
    assert result.code == "unknown_timezone"
    assert result.until is None


# --- daylight saving time ----------------------------------------------------


def test_spring_forward_keeps_local_hours():
    # US DST starts Sunday 2026-03-08: 08:00 New York is 13:00 UTC on
    # Saturday and 12:00 UTC on Sunday.
    ny = Recipient(("America/New_York",), "NY")
    saturday_night = at(NY, 2026, 3, 7, 22, 0)
    assert next_opening(FEDERAL_WINDOW, ny, [], saturday_night) == datetime(
        2026, 3, 8, 12, 0, tzinfo=UTC
    )
    sunday = datetime(2026, 3, 8, 12, 59, tzinfo=UTC)  # 08:59 EDT
    assert verdict(FEDERAL_WINDOW, ny, [], sunday).open


def test_fall_back_keeps_local_hours():
    # US DST ends Sunday 2026-11-01: 21:00 New York is 01:00 UTC on the 1st
    # (EDT) and 02:00 UTC on the 2nd (EST).
    ny = Recipient(("America/New_York",), "NY")
    assert not verdict(
        FEDERAL_WINDOW, ny, [], datetime(2026, 11, 1, 1, 0, tzinfo=UTC)
    ).open
    assert verdict(
        FEDERAL_WINDOW, ny, [], datetime(2026, 11, 2, 1, 30, tzinfo=UTC)
    ).open
    assert not verdict(
        FEDERAL_WINDOW, ny, [], datetime(2026, 11, 2, 2, 0, tzinfo=UTC)
    ).open


def test_a_start_in_the_spring_forward_gap_is_never_early():
    gap = window(start="02:30", end="05:00")
    ny = Recipient(("America/New_York",), "NY")
    opening = next_opening(gap, ny, [], at(NY, 2026, 3, 8, 0, 0))
    assert opening == at(NY, 2026, 3, 8, 3, 30)
    assert opening.astimezone(NY).hour == 3


def test_zones_on_different_dst_rules():
    # Europe changes on 2026-03-29, the US on 2026-03-08: between the two,
    # Madrid is 5 hours ahead of New York instead of 6.
    both = Recipient(("Europe/Madrid", "America/New_York"))
    day = window(start="09:00", end="15:00")
    madrid = ZoneInfo("Europe/Madrid")
    # On 2026-03-16 Madrid 09:00-15:00 is New York 04:00-10:00: overlap from
    # New York 09:00 (14:00 Madrid) to 10:00.
    opening = next_opening(day, both, [], at(NY, 2026, 3, 16, 0, 0))
    assert opening == at(NY, 2026, 3, 16, 9, 0)
    assert opening.astimezone(madrid).hour == 14
    assert verdict(day, both, [], at(NY, 2026, 3, 16, 9, 59)).open
    assert not verdict(day, both, [], at(NY, 2026, 3, 16, 10, 0)).open
    # After both changed (6 hours apart again) there is no overlap until
    # Europe changes back first, on 2026-10-25.
    assert next_opening(day, both, [], at(NY, 2026, 4, 6, 0, 0)) == at(
        NY, 2026, 10, 25, 9, 0
    )


def test_recipient_of_a_classified_number_matches_phonenumbers():
    """The import's fast path (no second parse) gives the zones that
    phonenumbers.timezone gives, for every region and number type."""
    import phonenumbers

    from jobs.imports import parse_phone
    from jobs.rules.windows import recipient_of

    checked = 0
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in range(11):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            e164 = phonenumbers.format_number(
                example, phonenumbers.PhoneNumberFormat.E164
            )
            phone = parse_phone(e164, "US")
            if phone is None:
                continue
            fast = recipient_of(phone.e164, phone.region, phone.number_type)
            assert fast == recipient_for(phone.e164), e164
            checked += 1
    assert checked > 500


def test_session_clock_target_is_the_nearest_instant_at_that_local_time():
    from conftest import session_clock_target

    real = datetime(2026, 3, 4, 10, 40, tzinfo=UTC)
    assert session_clock_target("03:00", real) == datetime(2026, 3, 4, 3, 0, tzinfo=UTC)
    assert session_clock_target("15:00", real) == datetime(
        2026, 3, 4, 15, 0, tzinfo=UTC
    )
    assert session_clock_target("23:00", real) == datetime(
        2026, 3, 3, 23, 0, tzinfo=UTC
    )
    assert session_clock_target("03:00@America/New_York", real) == datetime(
        2026, 3, 4, 3, 0, tzinfo=NY
    )
