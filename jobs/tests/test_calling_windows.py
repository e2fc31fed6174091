"""Calling windows in the database: import, the API's fields, bad input.

Every test here sets its window and pins the clock (time-machine); the
import's "now" is Python's clock, which time-machine moves.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine

from batches.models import Batch, BatchEvent
from batches.tests.factories import BatchFactory
from callcenter.actor import Actor
from jobs.imports import jobs_import, rows_from_csv, rows_from_json
from jobs.models import Job, JobStatus
from jobs.rules.windows import default_calling_window
from jobs.tests.factories import JobFactory

pytestmark = pytest.mark.django_db

ACTOR = Actor.system("tests")
LA = ZoneInfo("America/Los_Angeles")
NY = ZoneInfo("America/New_York")
# Wednesday 2026-03-04, 06:00 in California, 09:00 in New York.
EARLY = datetime(2026, 3, 4, 6, 0, tzinfo=LA)
FEDERAL = default_calling_window()


def test_product_default_window_is_the_federal_hours(settings):
    """The test settings give batches an all-day window
    (CALLING_WINDOW_DEFAULT); the product's default is 08:00-21:00."""
    assert settings.CALLING_WINDOW_DEFAULT == "00:00-24:00"
    settings.CALLING_WINDOW_DEFAULT = "08:00-21:00"
    batch = Batch.objects.create(account=BatchFactory().account, name="x")
    assert batch.calling_window == FEDERAL


def test_settings_default_is_08_to_21():
    import subprocess
    import sys

    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os; os.environ.pop('CALLING_WINDOW_DEFAULT', None);"
            "os.environ.setdefault('DJANGO_SECRET_KEY', 'x');"
            "import callcenter.settings as s; print(s.CALLING_WINDOW_DEFAULT)",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "DJANGO_SECRET_KEY": "x"},
    )
    assert out.stdout.strip() == "08:00-21:00"


def test_import_parks_a_job_outside_its_window_until_the_next_opening():
    """06:00 in California is outside 08-21: the job waits as scheduled at
    08:00 local, out of the claim index; New York is already open."""
    batch = BatchFactory(calling_window=FEDERAL)
    with time_machine.travel(EARLY, tick=False):
        result = jobs_import(
            batch=batch,
            rows=rows_from_json(
                [{"phone_number": "+14155550100"}, {"phone_number": "+12125550100"}]
            ),
            actor=ACTOR,
        )
    assert (result.created, result.pending, result.scheduled) == (2, 1, 1)
    ca = Job.objects.get(phone_number="+14155550100")
    assert ca.status == JobStatus.SCHEDULED
    assert ca.scheduled_at == datetime(2026, 3, 4, 8, 0, tzinfo=LA)
    assert Job.objects.get(phone_number="+12125550100").status == JobStatus.PENDING


def test_import_a_future_scheduled_at_in_a_closed_window_waits_for_the_opening():
    batch = BatchFactory(calling_window=FEDERAL)
    late = datetime(2026, 3, 4, 22, 0, tzinfo=LA)
    with time_machine.travel(EARLY, tick=False):
        jobs_import(
            batch=batch,
            rows=rows_from_json(
                [{"phone_number": "+14155550100", "scheduled_at": late.isoformat()}]
            ),
            actor=ACTOR,
        )
    job = Job.objects.get()
    assert job.scheduled_at == datetime(2026, 3, 5, 8, 0, tzinfo=LA)


def test_import_explicit_timezone_replaces_the_numbers_zone_json_and_csv():
    batch = BatchFactory(calling_window=FEDERAL)
    with time_machine.travel(EARLY, tick=False):
        jobs_import(
            batch=batch,
            rows=rows_from_json(
                [{"phone_number": "+14155550100", "timezone": "America/New_York"}]
            ),
            actor=ACTOR,
        )
        jobs_import(
            batch=batch,
            rows=rows_from_csv(
                "phone_number,timezone,name\n+14155550101,America/New_York,Ana\n"
            ),
            actor=ACTOR,
            from_text=True,
        )
    for job in Job.objects.all():
        # 09:00 in New York: open.
        assert job.timezone == "America/New_York"
        assert job.status == JobStatus.PENDING
    assert Job.objects.get(phone_number="+14155550101").variables == {"name": "Ana"}


@pytest.mark.parametrize("bad", ["Mars/Base", "america/new_york", "UTC+1"])
def test_import_invalid_timezone_is_a_row_error_and_nothing_is_written(bad):
    batch = BatchFactory()
    result = jobs_import(
        batch=batch,
        rows=rows_from_json(
            [
                {"phone_number": "+14155550100"},
                {"phone_number": "+14155550101", "timezone": bad},
            ]
        ),
        actor=ACTOR,
    )
    assert [e.row for e in result.errors] == [2]
    assert result.errors[0].errors[0].startswith("timezone:")
    assert not Job.objects.exists()


def test_import_a_window_that_never_opens_for_a_number_is_a_row_error():
    # 08:00-09:00 in New York and in Tokyo never overlap; no such number
    # spans both, so an explicit zone far from the window's days does it:
    # a window on Mondays only, and a holiday on every Monday of a year.
    batch = BatchFactory(
        calling_window={"start": "08:00", "end": "09:00", "days": ["mon"]}
    )
    account = batch.account
    first = date(2026, 3, 2)
    account.holidays = [(first + timedelta(weeks=w)).isoformat() for w in range(60)]
    account.save()
    with time_machine.travel(EARLY, tick=False):
        result = jobs_import(
            batch=batch,
            rows=rows_from_json([{"phone_number": "+14155550100"}]),
            actor=ACTOR,
        )
    assert result.errors
    assert "never opens" in result.errors[0].errors[0]
    assert not Job.objects.exists()


# --- the API -------------------------------------------------------------------


def test_api_batch_has_a_calling_window_and_retry_policy(api_client):
    response = api_client.post(
        "/api/v1/batches",
        {
            "name": "Windows",
            "calling_window": {
                "start": "09:00",
                "end": "24:00",
                "days": ["SAT", "sun"],
            },
            "retry_policy": {"busy": {"delay_seconds": 60}},
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["calling_window"] == {
        "start": "09:00",
        "end": "24:00",
        "days": ["sat", "sun"],
    }
    assert body["retry_policy"]["busy"] == {"retry": True, "delay_seconds": 60}
    assert body["retry_policy"]["voicemail"] == {"retry": False, "delay_seconds": 0}
    batch = Batch.objects.get(batch_id=body["batch_id"])
    assert batch.retry_policy == {"busy": {"retry": True, "delay_seconds": 60}}
    # The test settings' default window for a batch created without one.
    plain = api_client.post("/api/v1/batches", {"name": "Plain"}, format="json")
    assert plain.json()["calling_window"]["end"] == "24:00"

    patched = api_client.patch(
        f"/api/v1/batches/{batch.batch_id}",
        {"calling_window": {"start": "10:00", "end": "12:00"}},
        format="json",
    )
    assert patched.status_code == 200, patched.json()
    assert patched.json()["updated_fields"] == ["calling_window"]
    batch.refresh_from_db()
    assert batch.calling_window["start"] == "10:00"
    event = BatchEvent.objects.filter(batch=batch).first()
    assert event.changes["calling_window"][1]["start"] == "10:00"


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (
            {"calling_window": {"start": "09:00", "end": "08:00"}},
            "calling_window",
            "end",
        ),
        (
            {"calling_window": {"start": "09:00", "end": "17:00", "days": ["someday"]}},
            "calling_window",
            "someday",
        ),
        (
            {"calling_window": {"start": "25:00", "end": "26:00"}},
            "calling_window",
            "start",
        ),
        ({"retry_policy": {"ringing": {"retry": True}}}, "retry_policy", "ringing"),
        (
            {"retry_policy": {"busy": {"delay_seconds": -1}}},
            "retry_policy",
            "delay_seconds",
        ),
        ({"retry_policy": {"busy": {"retry": "yes"}}}, "retry_policy", "retry"),
    ],
)
def test_api_bad_window_or_policy_is_a_400_naming_the_field(
    api_client, body, field, words
):
    batch = BatchFactory(account=api_client.user.membership.account)
    before = (batch.calling_window, batch.retry_policy, batch.name)
    created = api_client.post("/api/v1/batches", {"name": "Bad", **body}, format="json")
    assert created.status_code == 400
    fields = created.json()["error"]["fields"]
    assert list(fields) == [field]
    assert words in str(fields[field])
    assert not Batch.objects.filter(name="Bad").exists()
    patched = api_client.patch(
        f"/api/v1/batches/{batch.batch_id}", {"name": "Renamed", **body}, format="json"
    )
    assert patched.status_code == 400
    batch.refresh_from_db()
    assert (batch.calling_window, batch.retry_policy, batch.name) == before


def test_api_import_invalid_timezone_is_a_400_for_that_row(api_client):
    batch = BatchFactory(account=api_client.user.membership.account)
    response = api_client.post(
        f"/api/v1/batches/{batch.batch_id}/jobs",
        [
            {"phone_number": "+14155550100", "timezone": "Europe/Madrid"},
            {"phone_number": "+14155550101", "timezone": "Nowhere/Land"},
        ],
        format="json",
    )
    assert response.status_code == 400
    assert "Nowhere/Land" in str(response.json())
    assert "timezone" in str(response.json())
    assert not Job.objects.filter(batch=batch).exists()


def test_account_holidays_are_set_through_the_audited_rules_service():
    from accounts.models import AccountEvent
    from accounts.services import InvalidDialingRulesError, account_set_dialing_rules

    account = BatchFactory().account
    changed = account_set_dialing_rules(
        account=account, actor=ACTOR, holidays=["2026-12-25", "2026-01-01"]
    )
    assert changed == ["holidays"]
    account.refresh_from_db()
    assert account.holidays == ["2026-01-01", "2026-12-25"]
    event = AccountEvent.objects.filter(account=account).latest("id")
    assert event.changes["holidays"] == [[], ["2026-01-01", "2026-12-25"]]
    with pytest.raises(InvalidDialingRulesError, match="2026-02-30"):
        account_set_dialing_rules(account=account, actor=ACTOR, holidays=["2026-02-30"])
    account.refresh_from_db()
    assert account.holidays == ["2026-01-01", "2026-12-25"]


def test_admin_account_form_takes_holidays():
    from accounts.forms import AccountAdminForm

    account = BatchFactory().account
    data = {
        "name": account.name,
        "slug": account.slug,
        "allowed_number_types": account.allowed_number_types,
        "allowed_countries": "",
        "holidays": "2026-12-25, 2026-07-04\n2026-12-25",
    }
    form = AccountAdminForm(data=data, instance=account)
    assert form.is_valid(), form.errors
    assert form.cleaned_data["holidays"] == ["2026-07-04", "2026-12-25"]
    bad = AccountAdminForm(data={**data, "holidays": "christmas"}, instance=account)
    assert not bad.is_valid()
    assert "holidays" in bad.errors


def test_api_explain_says_outside_window_until_when_in_which_zone(api_client):
    batch = BatchFactory(
        account=api_client.user.membership.account, calling_window=FEDERAL
    )
    job = JobFactory(batch=batch, phone_number="+14155550100")
    with time_machine.travel(EARLY, tick=False):
        body = api_client.get(f"/api/v1/jobs/{job.pk}/explain").json()
    assert body["callable"] is False
    [reason] = [r for r in body["reasons"] if r["code"] == "outside_window"]
    assert "America/Los_Angeles" in reason["detail"]
    assert "Wed 06:00" in reason["detail"]
    assert datetime.fromisoformat(reason["until"]) == datetime(
        2026, 3, 4, 8, 0, tzinfo=LA
    )

    account = batch.account
    account.holidays = ["2026-03-04"]
    account.save()
    with time_machine.travel(EARLY + timedelta(hours=4), tick=False):
        body = api_client.get(f"/api/v1/jobs/{job.pk}/explain").json()
    assert [r["code"] for r in body["reasons"]] == ["holiday"]
    with time_machine.travel(EARLY + timedelta(days=1, hours=4), tick=False):
        body = api_client.get(f"/api/v1/jobs/{job.pk}/explain").json()
    assert body["callable"] is True
