"""Which numbers an account may call: its allowed number types and countries.

Premium-rate and revenue-share numbers cost the caller money and pay the
number's owner, so an account that could call any valid number could be made
to pay a fraudster (international revenue-share fraud, IRSF). Each account
therefore has an allow-list of number types and of destination countries:

- number types: fixed line, mobile and fixed-line-or-mobile (most North
  American numbers) by default; premium rate, shared cost, UAN, VoIP, toll
  free, personal, pager and voicemail numbers only if staff enable them;
- countries: an explicit list set by staff, or, while the list is empty,
  every country except settings.DIAL_HIGH_RISK_COUNTRIES.

The rules are checked when jobs are imported (a refused number is a bad row)
and again in the transaction where the worker marks a job dialled, because staff may
narrow an account's rules while its jobs are queued (jobs/rules/number_rules.py).
Only staff change them, in the admin, through
``accounts.services.account_set_dialing_rules`` (audited).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import translation
from django.utils.translation import gettext_lazy as _


class NumberType(models.TextChoices):
    """The number types of libphonenumber, by name."""

    FIXED_LINE = "fixed_line", _("Fixed line")
    MOBILE = "mobile", _("Mobile")
    FIXED_LINE_OR_MOBILE = "fixed_line_or_mobile", _("Fixed line or mobile")
    TOLL_FREE = "toll_free", _("Toll free")
    PREMIUM_RATE = "premium_rate", _("Premium rate")
    SHARED_COST = "shared_cost", _("Shared cost")
    VOIP = "voip", _("VoIP")
    PERSONAL_NUMBER = "personal_number", _("Personal number")
    PAGER = "pager", _("Pager")
    UAN = "uan", _("UAN (universal access number)")
    VOICEMAIL = "voicemail", _("Voicemail access")


# libphonenumber's PhoneNumberType values, in NumberType's order.
_LIBRARY_CODES = dict(
    zip(range(11), [str(value) for value in NumberType.values], strict=True)
)

DEFAULT_NUMBER_TYPES = (
    NumberType.FIXED_LINE.value,
    NumberType.MOBILE.value,
    NumberType.FIXED_LINE_OR_MOBILE.value,
)

# Region code libphonenumber gives numbers of non-geographic country codes:
# satellite (+881), international networks (+882, +883), +800, +808, +979.
NON_GEOGRAPHIC = "001"


def default_number_types() -> list[str]:
    """Account.allowed_number_types' default (a callable: a fresh list)."""
    return list(DEFAULT_NUMBER_TYPES)


def unknown_number_types(types: Iterable[str]) -> list[str]:
    return sorted(set(types) - set(NumberType.values))


def unknown_countries(codes: Iterable[str]) -> list[str]:
    """The codes that name no region libphonenumber knows (nor 001)."""
    from phonenumbers import SUPPORTED_REGIONS

    return sorted(set(codes) - SUPPORTED_REGIONS - {NON_GEOGRAPHIC})


def number_type_name(library_code: int) -> str:
    """NumberType value for a phonenumbers.PhoneNumberType code; "unknown"
    for a number that matches no type (it is not a valid number)."""
    return _LIBRARY_CODES.get(library_code, "unknown")


def refusal(
    *,
    region: str | None,
    number_type: str,
    allowed_number_types: Iterable[str],
    allowed_countries: Iterable[str],
) -> str | None:
    """Why an account with these rules may not call this number; None if it
    may. ``region`` is libphonenumber's region code of the number (ISO 3166
    alpha-2, or "001" for non-geographic codes)."""
    if number_type not in set(allowed_number_types):
        # The reason stays in English as before, whatever the request's
        # language (the labels are translated for the admin's form).
        with translation.override("en"):
            label = str(dict(NumberType.choices).get(number_type, number_type))
        return (
            f"{label.lower()} numbers are not allowed for this account "
            "(ask staff to enable the number type)."
        )
    where = region or "unknown"
    countries = set(allowed_countries)
    if countries:
        if where not in countries:
            return (
                f"destination {where} is not among the countries allowed for this "
                "account."
            )
    elif where in settings.DIAL_HIGH_RISK_COUNTRIES:
        return (
            f"destination {where} is a high-risk destination, not allowed unless "
            "staff add it to the account's allowed countries."
        )
    return None


def parse_holidays(values: Any) -> list[str]:
    """An account's holidays: "YYYY-MM-DD" dates, sorted, without repeats.
    ValueError names the first bad one."""
    if values in (None, ""):
        return []
    if not isinstance(values, list):
        raise ValueError('Expected a list of dates ("YYYY-MM-DD").')
    out = set()
    for item in values:
        try:
            if not isinstance(item, str) or len(item) != 10:
                raise ValueError(item)
            out.add(date.fromisoformat(item).isoformat())
        except ValueError:
            raise ValueError(f'{item!r} is not a date ("YYYY-MM-DD").') from None
    return sorted(out)
