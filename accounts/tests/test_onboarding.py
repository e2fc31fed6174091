"""Account onboarding: create_account, POST /api/v1/accounts, and the hint
that an unknown slug gives."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from accounts.models import Account, AccountEvent, CreditEntry
from accounts.tests.factories import AccountFactory, UserFactory
from accounts.tokens import api_token_create

pytestmark = pytest.mark.django_db

URL = "/api/v1/accounts"


def create_account(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("create_account", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


# --- create_account -------------------------------------------------------------


def test_create_account__creates_prints_and_books_initial_credits():
    out, _ = create_account("acme", "--name", "Acme Corp", "--credits", "500")

    account = Account.objects.get(slug="acme")
    assert (account.name, account.credits) == ("Acme Corp", 500)
    assert out.splitlines() == [
        "slug: acme",
        "name: Acme Corp",
        "credits: 500",
        "created: yes",
    ]
    (entry,) = CreditEntry.objects.filter(account=account)
    assert (entry.kind, entry.amount, entry.balance_after) == ("add", 500, 500)
    assert (entry.source, entry.actor_label) == ("command", "create_account")
    (event,) = AccountEvent.objects.filter(account=account)
    assert (event.action, event.source) == ("created", "command")
    assert event.changes == {"name": "Acme Corp", "credits": 500}


def test_create_account__is_idempotent():
    create_account("acme", "--name", "Acme Corp", "--credits", "500")

    out, err = create_account("acme", "--name", "Other", "--credits", "500")

    account = Account.objects.get(slug="acme")
    assert (account.name, account.credits) == ("Acme Corp", 500)
    assert "created: no" in out
    assert "already exists" in err
    assert CreditEntry.objects.filter(account=account).count() == 1
    assert AccountEvent.objects.filter(account=account).count() == 1


def test_create_account__no_credits_no_ledger_entry_and_name_defaults_to_slug():
    out, _ = create_account("beta")

    account = Account.objects.get(slug="beta")
    assert (account.name, account.credits) == ("beta", 0)
    assert not CreditEntry.objects.filter(account=account).exists()
    assert "credits: 0" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("not a slug",), "valid"),
        (("x" * 65,), "64"),
        (("acme", "--credits", "-1"), "0 or more"),
        (("acme", "--name", " "), "--name"),
    ],
)
def test_create_account__refuses_bad_arguments(args, message):
    with pytest.raises(CommandError, match=message):
        create_account(*args)
    assert not Account.objects.exists()


def test_create_api_token__unknown_account_says_how_to_create_it():
    with pytest.raises(CommandError) as error:
        call_command(
            "create_api_token",
            "crm",
            "--account",
            "nope",
            "--create-user",
            stdout=StringIO(),
            stderr=StringIO(),
        )
    assert "No account 'nope'" in str(error.value)
    assert "python manage.py create_account nope --name" in str(error.value)


def test_onboarding__account_then_token_then_api(client):
    create_account("acme", "--name", "Acme", "--credits", "10")
    out = StringIO()
    call_command(
        "create_api_token",
        "crm",
        "--account",
        "acme",
        "--create-user",
        stdout=out,
        stderr=StringIO(),
    )

    response = client.get(
        "/api/v1/account/credits",
        HTTP_AUTHORIZATION=f"Token {out.getvalue().strip()}",
    )

    assert response.status_code == 200
    assert response.json()["credits"] == 10


# --- POST /api/v1/accounts --------------------------------------------------------


def staff_client(*perms: str, staff: bool = True) -> Any:
    user: Any = UserFactory(is_staff=staff)
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client: Any = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_create(user=user)}")
    client.user = user
    return client


def test_api_create_account__staff_with_permissions_creates_audited():
    client = staff_client("add_account", "add_credits")

    response = client.post(
        URL,
        {"slug": "acme", "name": "Acme", "credits": 250},
        format="json",
        REMOTE_ADDR="10.1.2.3",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["account"]["slug"] == "acme"
    assert body["account"]["credits"] == 250
    account = Account.objects.get(slug="acme")
    assert account.credits == 250
    (entry,) = CreditEntry.objects.filter(account=account)
    assert (entry.kind, entry.amount, entry.source) == ("add", 250, "api")
    assert entry.actor == client.user
    (event,) = AccountEvent.objects.filter(account_slug="acme")
    assert (event.source, event.actor, event.remote_addr) == (
        "api",
        client.user,
        "10.1.2.3",
    )


def test_api_create_account__without_credits_needs_only_add_account():
    client = staff_client("add_account")

    response = client.post(URL + "/", {"slug": "beta", "name": "Beta"}, format="json")

    assert response.status_code == 201
    assert Account.objects.get(slug="beta").credits == 0
    assert not CreditEntry.objects.exists()


@pytest.mark.parametrize(
    ("perms", "staff", "payload"),
    [
        ((), True, {"slug": "acme", "name": "Acme"}),
        (("add_account",), False, {"slug": "acme", "name": "Acme"}),
        (("add_account",), True, {"slug": "acme", "name": "Acme", "credits": 5}),
    ],
    ids=["no-permission", "not-staff", "credits-without-add_credits"],
)
def test_api_create_account__refused_without_the_permissions(perms, staff, payload):
    client = staff_client(*perms, staff=staff)

    response = client.post(URL, payload, format="json")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert not Account.objects.filter(slug="acme").exists()
    assert not AccountEvent.objects.exists()


def test_api_create_account__member_token_is_refused(api_client):
    response = api_client.post(URL, {"slug": "acme", "name": "A"}, format="json")
    assert response.status_code == 403


def test_api_create_account__anonymous_is_401(client):
    assert client.post(URL, {"slug": "acme", "name": "A"}).status_code == 401


def test_api_create_account__existing_slug_is_409_and_changes_nothing():
    AccountFactory(slug="acme", name="Acme", credits=7)
    client = staff_client("add_account", "add_credits")

    response = client.post(
        URL, {"slug": "acme", "name": "Other", "credits": 100}, format="json"
    )

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "account_exists"
    account = Account.objects.get(slug="acme")
    assert (account.name, account.credits) == ("Acme", 7)
    assert not CreditEntry.objects.exists()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": "Acme"}, "slug"),
        ({"slug": "has space", "name": "Acme"}, "slug"),
        ({"slug": "acme"}, "name"),
        ({"slug": "acme", "name": "Acme", "credits": -1}, "credits"),
        ({"slug": "acme", "name": "Acme", "credits": "10"}, "credits"),
        ({"slug": "acme", "name": "Acme", "plan": "gold"}, "plan"),
    ],
)
def test_api_create_account__bad_input_is_400(payload, field):
    client = staff_client("add_account", "add_credits")

    response = client.post(URL, payload, format="json")

    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert not Account.objects.exists()


def test_api_credits__unknown_account_says_how_to_create_it(staff_user):
    client = APIClient()
    client.force_authenticate(staff_user)

    response = client.get("/api/v1/account/credits?account=nope")

    assert response.status_code == 404
    assert "create_account nope" in response.json()["error"]["message"]


def test_admin_add_account__goes_through_the_service(admin_client):
    response = admin_client.post(
        "/admin/accounts/account/add/",
        {
            "name": "Gamma",
            "slug": "gamma",
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
        },
    )

    assert response.status_code == 302, response.content[:2000]
    (event,) = AccountEvent.objects.filter(account_slug="gamma")
    assert event.source == "admin"
