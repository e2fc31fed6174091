"""API keys are stored only as a hash, and still authenticate."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.db import connection
from django.urls import NoReverseMatch, reverse
from rest_framework.test import APIClient

from accounts.models import ApiToken
from accounts.tokens import api_token_create, hash_key

pytestmark = pytest.mark.django_db

URL = "/api/v1/batches"


def get(key: str):
    return APIClient().get(URL, HTTP_AUTHORIZATION=f"Token {key}")


def stored_values(user) -> list[str]:
    """Every value of the user's token row, as text."""
    row = ApiToken.objects.filter(user=user).values().get()
    return [str(value) for value in row.values()]


def test_api_token__only_a_hash_and_a_prefix_are_stored(member):
    key = api_token_create(user=member)

    assert key not in stored_values(member)
    token = ApiToken.objects.get(user=member)
    assert token.key_hash == hash_key(key) != key
    assert token.prefix == key[:8]
    assert get(key).status_code == 200


def test_api_token__a_wrong_or_stored_value_is_401(member):
    key = api_token_create(user=member)
    token = ApiToken.objects.get(user=member)
    for wrong in (key[:-1] + ("0" if key[-1] != "0" else "1"), token.key_hash):
        response = get(wrong)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "authentication_failed"


def test_api_token__inactive_user_is_401(member):
    key = api_token_create(user=member)
    member.is_active = False
    member.save(update_fields=["is_active"])
    assert get(key).status_code == 401


def test_api_token__admin_shows_the_prefix_never_a_key(admin_client, member):
    key = api_token_create(user=member)
    page = admin_client.get(reverse("admin:accounts_apitoken_changelist"))
    html = page.content.decode()
    assert key[:8] in html
    assert key not in html
    assert hash_key(key) not in html
    # REST framework's own token admin, which listed plain keys, is gone.
    with pytest.raises(NoReverseMatch):
        reverse("admin:authtoken_tokenproxy_changelist")


def test_api_token_migration__hashes_plain_keys_and_erases_them(member):
    """A database from before: REST framework's table with a plain key."""
    plain = "0123456789abcdef0123456789abcdef01234567"
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY,"
            " created timestamptz NOT NULL, user_id bigint NOT NULL)"
        )
        cursor.execute(
            "INSERT INTO authtoken_token VALUES (%s, now(), %s)", [plain, member.pk]
        )
    migration = importlib.import_module("accounts.migrations.0006_api_token_hashed")

    with connection.schema_editor() as editor:
        migration.hash_plain_tokens(apps, editor)

    assert ApiToken.objects.get(user=member).key_hash == hash_key(plain)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM authtoken_token")
        assert cursor.fetchone()[0] == 0
    assert get(plain).status_code == 200
