"""An account's dialing rules: the service (validated, audited) and the
admin, the only interface that changes them (staff)."""

from __future__ import annotations

import pytest

from accounts.models import Account, AccountEvent
from accounts.services import InvalidDialingRulesError, account_set_dialing_rules
from callcenter.actor import Actor, Source

pytestmark = pytest.mark.django_db


def test_account__defaults_allow_fixed_line_and_mobile_and_every_safe_country(
    account,
):
    assert sorted(account.allowed_number_types) == [
        "fixed_line",
        "fixed_line_or_mobile",
        "mobile",
    ]
    assert account.allowed_countries == []


def test_account_set_dialing_rules__changes_and_audits(account, staff_user):
    actor = Actor(source=Source.ADMIN, user=staff_user, remote_addr="10.0.0.9")

    changed = account_set_dialing_rules(
        account=account,
        actor=actor,
        allowed_number_types=["mobile", "premium_rate"],
        allowed_countries=["us", "GB", "US"],
    )

    assert changed == ["allowed_number_types", "allowed_countries"]
    stored = Account.objects.get(pk=account.pk)
    assert stored.allowed_number_types == ["mobile", "premium_rate"]
    assert stored.allowed_countries == ["GB", "US"]
    event = AccountEvent.objects.get(account=account)
    assert event.action == "dialing_rules_changed"
    assert event.actor == staff_user
    assert event.source == "admin"
    assert event.remote_addr == "10.0.0.9"
    assert event.changes["allowed_countries"] == [[], ["GB", "US"]]


def test_account_set_dialing_rules__unchanged_is_not_audited(account, system_actor):
    changed = account_set_dialing_rules(
        account=account,
        actor=system_actor,
        allowed_number_types=list(reversed(account.allowed_number_types)),
        allowed_countries=[],
    )
    assert changed == []
    assert not AccountEvent.objects.exists()


@pytest.mark.parametrize(
    "rules",
    [{"allowed_number_types": ["premium"]}, {"allowed_countries": ["XX"]}],
)
def test_account_set_dialing_rules__unknown_values_are_refused(
    account, system_actor, rules
):
    with pytest.raises(InvalidDialingRulesError):
        account_set_dialing_rules(account=account, actor=system_actor, **rules)
    assert not AccountEvent.objects.exists()


def change_form(account, **rules) -> dict:
    data = {
        "name": rules.get("name", account.name),
        "slug": account.slug,
        "credits": account.credits,
        "allowed_number_types": rules.get(
            "allowed_number_types", account.allowed_number_types
        ),
        "allowed_countries": rules.get("allowed_countries", ""),
        # The caps, as the change page posts them back (empty: no cap).
        "max_calls_per_number_per_24h": rules.get(
            "max_calls_per_number_per_24h", account.max_calls_per_number_per_24h
        ),
        "max_concurrent_calls": rules.get(
            "max_concurrent_calls", account.max_concurrent_calls or ""
        ),
    }
    for prefix in ("memberships",):
        data.update(
            {
                f"{prefix}-TOTAL_FORMS": "0",
                f"{prefix}-INITIAL_FORMS": "0",
                f"{prefix}-MIN_NUM_FORMS": "0",
                f"{prefix}-MAX_NUM_FORMS": "1000",
            }
        )
    return data


def url(account) -> str:
    return f"/admin/accounts/account/{account.pk}/change/"


def test_account_admin__staff_change_the_rules_through_the_service(
    admin_client, account
):
    response = admin_client.post(
        url(account),
        change_form(
            account,
            allowed_number_types=["fixed_line", "mobile", "voip"],
            allowed_countries="us, ca",
        ),
    )

    assert response.status_code == 302, response.content
    account.refresh_from_db()
    assert account.allowed_number_types == ["fixed_line", "mobile", "voip"]
    assert account.allowed_countries == ["CA", "US"]
    event = AccountEvent.objects.get(account=account)
    assert event.source == "admin"
    assert event.actor.username == "admin"
    page = admin_client.get(url(account)).content.decode()
    assert "CA US" in page  # the list, as staff typed it back
    assert "Dialing rules changed by admin (admin)" in page  # the audit


def test_account_admin__staff_set_the_caps_through_the_service(admin_client, account):
    response = admin_client.post(
        url(account),
        change_form(account, max_calls_per_number_per_24h=2, max_concurrent_calls=10),
    )

    assert response.status_code == 302, response.content
    account.refresh_from_db()
    assert (account.max_calls_per_number_per_24h, account.max_concurrent_calls) == (
        2,
        10,
    )
    event = AccountEvent.objects.get(account=account)
    assert event.changes == {
        "max_calls_per_number_per_24h": [3, 2],
        "max_concurrent_calls": [None, 10],
    }


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_calls_per_number_per_24h", 0),
        ("max_calls_per_number_per_24h", -1),
        ("max_concurrent_calls", -1),
    ],
)
def test_account_admin__a_bad_cap_is_a_form_error_and_changes_nothing(
    admin_client, account, field, value
):
    response = admin_client.post(
        url(account), change_form(account, name="Renamed", **{field: value})
    )

    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    account.refresh_from_db()
    assert account.name != "Renamed"
    assert (account.max_calls_per_number_per_24h, account.max_concurrent_calls) == (
        3,
        None,
    )
    assert not AccountEvent.objects.exists()


@pytest.mark.parametrize(
    "caps",
    [
        {"max_calls_per_number_per_24h": 0},
        {"max_calls_per_number_per_24h": True},
        {"max_concurrent_calls": -2},
    ],
)
def test_account_set_dialing_rules__bad_caps_are_refused(account, system_actor, caps):
    with pytest.raises(InvalidDialingRulesError):
        account_set_dialing_rules(account=account, actor=system_actor, **caps)
    assert not AccountEvent.objects.exists()


def test_account_admin__unknown_country_is_a_form_error(admin_client, account):
    response = admin_client.post(
        url(account), change_form(account, allowed_countries="US ZZ")
    )

    assert response.status_code == 200
    assert "Unknown country codes: ZZ" in response.content.decode()
    account.refresh_from_db()
    assert account.allowed_countries == []
