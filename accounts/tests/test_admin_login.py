"""The admin login's failure limit, through Django's test client."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from accounts.tests.factories import UserFactory

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/"
PASSWORD = "pw-for-tests-123"  # UserFactory's


@pytest.fixture(autouse=True)
def limits(settings):
    cache.clear()
    settings.ADMIN_LOGIN_MAX_FAILURES = 3
    settings.ADMIN_LOGIN_MAX_FAILURES_PER_IP = 5
    settings.ADMIN_LOGIN_WINDOW_SECONDS = 600
    yield
    cache.clear()


def login(username, password, address="203.0.113.7"):
    client = Client(REMOTE_ADDR=address)
    response = client.post(LOGIN, {"username": username, "password": password})
    return response, client


def test_admin_login__locks_a_username_after_its_failures():
    UserFactory(username="alice", is_staff=True)
    for n in range(3):
        failed, _ = login("alice", f"guess-{n}", address=f"198.51.100.{n}")
        assert failed.status_code == 200  # the form, with its error

    refused, client = login("alice", PASSWORD, address="198.51.100.99")

    assert refused.status_code == 429
    assert refused["Retry-After"] == "600"
    assert "Too many failed login attempts" in refused.content.decode()
    assert "_auth_user_id" not in client.session
    # Another user is not locked out.
    UserFactory(username="bob", is_staff=True)
    ok, _ = login("bob", PASSWORD, address="198.51.100.99")
    assert ok.status_code == 302


def test_admin_login__limits_one_address_spraying_usernames():
    UserFactory(username="carol", is_staff=True)
    for n in range(5):
        login(f"user{n}", "guess")

    refused, _ = login("carol", PASSWORD)
    assert refused.status_code == 429
    ok, _ = login("carol", PASSWORD, address="192.0.2.1")
    assert ok.status_code == 302


def test_admin_login__the_window_passes_and_a_success_clears_the_count():
    UserFactory(username="dave", is_staff=True)
    with time_machine.travel(timezone.now(), tick=False) as clock:
        for _ in range(3):
            login("dave", "guess", address="192.0.2.10")
        assert login("dave", PASSWORD)[0].status_code == 429
        clock.shift(timedelta(seconds=601))
        assert login("dave", PASSWORD)[0].status_code == 302
        # The success cleared dave's count: two new failures do not lock.
        for _ in range(2):
            login("dave", "guess", address="192.0.2.11")
        assert login("dave", PASSWORD)[0].status_code == 302


def test_admin_login__get_shows_the_form():
    response = Client().get(LOGIN)
    assert response.status_code == 200
    assert 'name="password"' in response.content.decode()
