"""Premium-rate and revenue-share numbers: each account's allowed number
types and countries, at import (bad rows, 400) and in the API."""

from __future__ import annotations

import pytest

from accounts.dialing import NumberType
from accounts.services import account_set_dialing_rules
from batches.tests.factories import BatchFactory
from batches.tests.test_api_batches import assert_error
from callcenter.actor import Actor
from jobs.imports import jobs_import, parse_phone, rows_from_csv, rows_from_json
from jobs.models import Job

pytestmark = pytest.mark.django_db

STAFF = Actor.system("staff in tests")
# Premium rate in the US (900), the UK (0901), and the International Premium
# Rate Service (+979).
PREMIUM = ["+19002345678", "+449012345678", "+979123456789"]
OTHER_REFUSED_TYPES = {
    "+34901123456": NumberType.SHARED_COST,
    "+445512345678": NumberType.UAN,
    "+445612345678": NumberType.VOIP,
    "+18005551234": NumberType.TOLL_FREE,
}
CUBA_MOBILE = "+5351234567"


@pytest.fixture
def batch(account):
    return BatchFactory(account=account)


def jobs_url(batch) -> str:
    return f"/api/v1/batches/{batch.batch_id}/jobs"


def test_parse_phone__classifies_as_the_library_does():
    import phonenumbers

    for raw in [*PREMIUM, *OTHER_REFUSED_TYPES, CUBA_MOBILE, "+14155550100"]:
        number = phonenumbers.parse(raw)
        phone = parse_phone(raw, "US", {})
        assert phone is not None
        assert phone.region == phonenumbers.region_code_for_number(number)
        assert phone.number_type == NumberType.values[phonenumbers.number_type(number)]
    assert parse_phone("+19002345678", "US").number_type == NumberType.PREMIUM_RATE


def test_parse_phone__region_and_type_agree_with_the_library_everywhere():
    """Valid, invalid and near-valid numbers of every type in many regions:
    the bulk path's classification is the library's."""
    import random

    import phonenumbers

    rng = random.Random(11)
    cache: dict = {}
    checked = 0
    for region in sorted(phonenumbers.SUPPORTED_REGIONS)[::4]:
        for kind in range(11):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            base = str(example.national_number)
            for _ in range(5):
                digits = list(base)
                for _ in range(rng.randint(0, 1)):
                    digits[rng.randrange(len(digits))] = str(rng.randint(0, 9))
                raw = f"+{example.country_code}{''.join(digits)}"
                number = phonenumbers.parse(raw)
                phone = parse_phone(raw, "US", cache)
                if not phonenumbers.is_valid_number(number):
                    assert phone is None, raw
                    continue
                assert phone is not None, raw
                assert phone.region == phonenumbers.region_code_for_number(number)
                expected = NumberType.values[phonenumbers.number_type(number)]
                assert phone.number_type == expected, raw
                checked += 1
    assert checked > 500


@pytest.mark.parametrize("phone", PREMIUM)
def test_batch_jobs_import__premium_rate_number_is_a_bad_row_400(
    api_client, batch, phone
):
    rows = [{"phone_number": "+14155550100"}, {"phone_number": phone}]
    error = assert_error(api_client.post(jobs_url(batch), rows), 400, "invalid_rows")
    [bad] = error["rows"]
    assert bad["row"] == 2
    assert "premium rate numbers are not allowed" in bad["errors"][0]
    assert not Job.objects.exists()


@pytest.mark.parametrize("phone", PREMIUM)
def test_batch_jobs_import__premium_rate_number_in_a_csv_is_a_bad_row_400(
    api_client, batch, phone
):
    body = f"phone_number,name\n{phone},Ana\n".encode()
    response = api_client.generic("POST", jobs_url(batch), body, "text/csv")
    error = assert_error(response, 400, "invalid_rows")
    assert error["rows"][0]["row"] == 2
    assert not Job.objects.exists()


def test_batches_create__with_a_premium_rate_job_is_400(api_client):
    response = api_client.post(
        "/api/v1/batches",
        {"name": "x", "jobs": [{"phone_number": "+449012345678"}]},
    )
    assert_error(response, 400, "invalid_rows")
    assert not Job.objects.exists()


@pytest.mark.parametrize(("phone", "kind"), OTHER_REFUSED_TYPES.items())
def test_jobs_import__types_outside_the_default_allow_list_are_refused(
    batch, phone, kind
):
    result = jobs_import(
        batch=batch, rows=rows_from_json([{"phone_number": phone}]), actor=STAFF
    )
    assert len(result.errors) == 1
    assert kind.label.lower() in result.errors[0].errors[0]


def test_jobs_import__number_type_enabled_by_staff_is_accepted(account, batch):
    account_set_dialing_rules(
        account=account,
        actor=STAFF,
        allowed_number_types=[*account.allowed_number_types, "premium_rate"],
    )
    result = jobs_import(
        batch=batch, rows=rows_from_json([{"phone_number": PREMIUM[0]}]), actor=STAFF
    )
    assert result.ok
    assert result.created == 1


def test_jobs_import__high_risk_destination_refused_by_default(account, batch):
    rows = rows_from_csv(f"phone_number\n{CUBA_MOBILE}\n+34612345678\n")
    result = jobs_import(batch=batch, rows=rows, actor=STAFF, from_text=True)
    assert [e.row for e in result.errors] == [2]
    assert "high-risk destination" in result.errors[0].errors[0]

    account_set_dialing_rules(account=account, actor=STAFF, allowed_countries=["CU"])
    rows = rows_from_csv(f"phone_number\n{CUBA_MOBILE}\n+34612345678\n")
    result = jobs_import(batch=batch, rows=rows, actor=STAFF, from_text=True)
    # An explicit list is the whole list: Spain is not on it now.
    assert [e.row for e in result.errors] == [3]
    assert "not among the countries allowed" in result.errors[0].errors[0]


def test_jobs_import__non_geographic_codes_are_high_risk_by_default(account, batch):
    account_set_dialing_rules(
        account=account, actor=STAFF, allowed_number_types=list(NumberType.values)
    )
    result = jobs_import(
        batch=batch, rows=rows_from_json([{"phone_number": PREMIUM[2]}]), actor=STAFF
    )
    assert "destination 001" in result.errors[0].errors[0]
