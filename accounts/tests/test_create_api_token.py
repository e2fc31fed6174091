from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from accounts.models import ApiToken, Membership
from accounts.tests.factories import AccountFactory, MembershipFactory, UserFactory
from accounts.tokens import hash_key

pytestmark = pytest.mark.django_db


def run(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("create_api_token", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def stored_key_of(user) -> ApiToken:
    return ApiToken.objects.get(user=user)


def test_create_api_token__prints_only_the_key_once(member):
    out, _ = run(member.username)
    key = out.strip()
    assert out == key + "\n"
    token = stored_key_of(member)
    assert token.key_hash == hash_key(key)
    assert token.prefix == key[:8]
    # Shown once: a second run cannot show it again and says how to go on.
    with pytest.raises(CommandError, match="--rotate"):
        run(member.username)
    assert stored_key_of(member).key_hash == hash_key(key)


def test_create_api_token__rotate_replaces_the_key(member, client):
    first, _ = run(member.username)
    second, err = run(member.username, "--rotate")
    assert first != second
    assert stored_key_of(member).key_hash == hash_key(second.strip())
    assert "Replaced the key" in err
    old = client.get("/api/v1/batches", HTTP_AUTHORIZATION=f"Token {first.strip()}")
    assert old.status_code == 401


def test_create_api_token__create_user_in_account():
    account = AccountFactory(slug="acme")
    out, _ = run("crm", "--account", "acme", "--create-user", "--role", "viewer")
    user = get_user_model().objects.get(username="crm")
    assert not user.has_usable_password()
    assert user.membership.account == account
    assert user.membership.role == Membership.Role.VIEWER
    assert stored_key_of(user).key_hash == hash_key(out.strip())


def test_create_api_token__token_works_against_the_api(client):
    AccountFactory(slug="acme")
    key, _ = run("crm", "--account", "acme", "--create-user")
    response = client.get("/api/v1/batches", HTTP_AUTHORIZATION=f"Token {key.strip()}")
    assert response.status_code == 200


def test_create_api_token__adds_existing_user_to_account():
    AccountFactory(slug="acme")
    user = UserFactory()
    run(user.username, "--account", "acme")
    assert Membership.objects.get(user=user).account.slug == "acme"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("ghost",), "--create-user"),
        (("ghost", "--create-user"), "--account"),
        (("ghost", "--account", "nope", "--create-user"), "No account"),
    ],
)
def test_create_api_token__refuses_bad_arguments(args, message):
    with pytest.raises(CommandError, match=message):
        run(*args)


def test_create_api_token__refuses_user_without_account():
    user = UserFactory()
    with pytest.raises(CommandError, match="no account"):
        run(user.username)
    assert not ApiToken.objects.filter(user=user).exists()


def test_create_api_token__refuses_a_second_account():
    membership = MembershipFactory()
    AccountFactory(slug="other")
    with pytest.raises(CommandError, match="already belongs"):
        run(membership.user.username, "--account", "other")
