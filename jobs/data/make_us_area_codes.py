"""Regenerate us_area_codes.csv: the US state (or DC) of each area code.

The table is data, shipped in the repository and read by
``jobs.rules.windows``; this script only rebuilds it after a
``phonenumbers`` upgrade:

    .venv/bin/python jobs/data/make_us_area_codes.py > jobs/data/us_area_codes.csv

Source: the area-code level entries (country code 1 plus three digits) of
libphonenumber's English geocoding data, which follow the NANPA area code
assignments; only numbers whose region is US are kept (Canada and the
Caribbean have their own regions and no US state rules).
"""

from __future__ import annotations

import csv
import sys

import phonenumbers
from phonenumbers import geocoder

STATES = {
    "Alabama": "AL",
    "Alaska": "AK",
    "Arizona": "AZ",
    "Arkansas": "AR",
    "California": "CA",
    "Colorado": "CO",
    "Connecticut": "CT",
    "Delaware": "DE",
    "Washington D.C.": "DC",
    "Florida": "FL",
    "Georgia": "GA",
    "Hawaii": "HI",
    "Idaho": "ID",
    "Illinois": "IL",
    "Indiana": "IN",
    "Iowa": "IA",
    "Kansas": "KS",
    "Kentucky": "KY",
    "Louisiana": "LA",
    "Maine": "ME",
    "Maryland": "MD",
    "Massachusetts": "MA",
    "Michigan": "MI",
    "Minnesota": "MN",
    "Mississippi": "MS",
    "Missouri": "MO",
    "Montana": "MT",
    "Nebraska": "NE",
    "Nevada": "NV",
    "New Hampshire": "NH",
    "New Jersey": "NJ",
    "New Mexico": "NM",
    "New York": "NY",
    "North Carolina": "NC",
    "North Dakota": "ND",
    "Ohio": "OH",
    "Oklahoma": "OK",
    "Oregon": "OR",
    "Pennsylvania": "PA",
    "Rhode Island": "RI",
    "South Carolina": "SC",
    "South Dakota": "SD",
    "Tennessee": "TN",
    "Texas": "TX",
    "Utah": "UT",
    "Vermont": "VT",
    "Virginia": "VA",
    "Washington": "WA",
    "West Virginia": "WV",
    "Wisconsin": "WI",
    "Wyoming": "WY",
}
CODES = set(STATES.values())


def state_of(description: str) -> str | None:
    if description in STATES:
        return STATES[description]
    tail = description.rsplit(", ", 1)[-1]
    return tail if tail in CODES else None


def main() -> None:
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["area_code", "state"])
    for npa in range(200, 1000):
        number = phonenumbers.parse(f"+1{npa}5550100")
        if phonenumbers.region_code_for_number(number) != "US":
            continue
        state = state_of(geocoder.description_for_number(number, "en"))
        if state:
            out.writerow([npa, state])


if __name__ == "__main__":
    main()
