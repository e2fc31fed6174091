from __future__ import annotations

import threading

import pytest
from django.contrib.auth.models import Permission
from django.db import connections
from rest_framework.test import APIClient

from accounts.credits import account_suspend_for_credits
from accounts.models import Account, CreditEntry
from accounts.tests.factories import AccountFactory, MembershipFactory, UserFactory
from batches.tests.factories import BatchFactory
from jobs.models import Job
from jobs.tests.factories import JobFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/account/credits"


def client_for(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def grant(user, *codenames):
    for codename in codenames:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    # has_perm caches per instance: reload so the new permissions count.
    return type(user).objects.get(pk=user.pk)


def balances() -> dict[str, int]:
    """Every account's balance: a refused request changes none of them."""
    return dict(Account.objects.values_list("slug", "credits"))


@pytest.fixture
def staff():
    """Staff with the same permission the admin's add_credits action needs."""
    return grant(UserFactory(username="ops", is_staff=True), "add_credits")


def test_credits_post__staff_without_the_permission_is_refused():
    AccountFactory(slug="acme", credits=5)
    staff = UserFactory(username="clerk", is_staff=True)

    response = client_for(staff).post(
        URL, {"account": "acme", "amount": 500}, format="json"
    )

    assert response.status_code == 403, response.content
    assert response.json()["error"]["code"] == "permission_denied"
    assert not CreditEntry.objects.exists()
    assert AccountFactory(slug="acme").credits == 5


def test_credits_post__superuser_adds_to_any_account():
    AccountFactory(slug="acme", credits=5)
    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    response = client_for(root).post(
        URL, {"account": "acme", "amount": 10}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["credits"] == 15


def test_credits_get__another_account_needs_the_view_permission():
    AccountFactory(slug="acme", credits=42)
    staff = UserFactory(username="clerk", is_staff=True)

    refused = client_for(staff).get(URL, {"account": "acme"})
    assert refused.status_code == 403, refused.content
    assert "42" not in refused.content.decode()

    allowed = client_for(grant(staff, "view_account")).get(URL, {"account": "acme"})
    assert allowed.status_code == 200
    assert allowed.json()["credits"] == 42


def test_credits_get__member_with_view_permission_still_sees_only_own():
    member = grant(MembershipFactory(account__slug="own").user, "view_account")
    AccountFactory(slug="other")
    response = client_for(member).get(URL, {"account": "other"})
    assert response.status_code == 403


def test_credits_post__staff_adds_to_any_account_and_resumes_auto_paused(staff):
    account = AccountFactory(slug="acme", credits=0)
    batch = BatchFactory(account=account)
    JobFactory(batch=batch)
    account_suspend_for_credits(account_id=account.pk)

    response = client_for(staff).post(
        URL, {"account": "acme", "amount": 500, "note": "invoice 42"}, format="json"
    )

    assert response.status_code == 200, response.content
    assert response.json() == {
        "account": "acme",
        "added": 500,
        "credits": 500,
        "resumed_batches": [batch.batch_id],
        "unsuspended_jobs": 1,
    }
    assert Job.objects.get().status == "pending"
    entry = CreditEntry.objects.get(kind="add")
    assert (entry.source, entry.actor, entry.note) == ("api", staff, "invoice 42")
    assert entry.remote_addr == "127.0.0.1"


def test_credits_post__member_with_permission_tops_up_own_account_only():
    member = grant(
        MembershipFactory(account__slug="own", account__credits=5).user,
        "add_credits",
    )
    AccountFactory(slug="other", credits=7)
    client = client_for(member)

    ok = client.post(URL, {"amount": 10}, format="json")
    assert ok.status_code == 200
    assert ok.json()["credits"] == 15
    refused = client.post(URL, {"amount": 10, "account": "other"}, format="json")
    assert refused.status_code == 403
    assert balances() == {"own": 15, "other": 7}
    assert CreditEntry.objects.count() == 1


def test_credits_post__plain_member_is_refused():
    member = MembershipFactory(account__slug="own", account__credits=5).user
    response = client_for(member).post(URL, {"amount": 10}, format="json")
    assert response.status_code == 403
    assert not CreditEntry.objects.exists()
    assert balances() == {"own": 5}


def test_credits_post__anonymous_is_refused():
    AccountFactory(slug="acme", credits=5)
    response = APIClient().post(URL, {"account": "acme", "amount": 10}, format="json")
    assert response.status_code in (401, 403)
    assert not CreditEntry.objects.exists()
    assert balances() == {"acme": 5}


@pytest.mark.parametrize(
    "body",
    [
        {"amount": 0},
        {"amount": -3},
        {"amount": "10"},
        {"amount": 1.5},
        {"amount": True},
        {"amount": 10**10},
        {},
        {"amount": 5, "colour": "red"},
    ],
)
def test_credits_post__invalid_bodies_are_400(staff, body):
    AccountFactory(slug="acme", credits=5)
    response = client_for(staff).post(URL, {"account": "acme", **body}, format="json")
    assert response.status_code == 400, response.content
    assert not CreditEntry.objects.exists()
    assert balances() == {"acme": 5}


def test_credits_post__unknown_account_is_404_and_staff_without_account_400(staff):
    AccountFactory(slug="acme", credits=5)
    client = client_for(staff)
    assert (
        client.post(URL, {"account": "nope", "amount": 1}, format="json").status_code
        == 404
    )
    assert client.post(URL, {"amount": 1}, format="json").status_code == 400
    assert not CreditEntry.objects.exists()
    assert balances() == {"acme": 5}


def test_credits_get__member_sees_own_balance():
    member = MembershipFactory(account__slug="own", account__credits=42).user
    response = client_for(member).get(URL)
    assert response.status_code == 200
    assert response.json()["credits"] == 42
    assert response.json()["account"] == "own"


# --- Idempotency-Key ----------------------------------------------------------


def test_credits_post__idempotency_key_adds_once_and_replays(staff):
    account = AccountFactory(slug="acme", credits=0)
    BatchFactory(account=account)
    account_suspend_for_credits(account_id=account.pk)
    client = client_for(staff)
    body = {"account": "acme", "amount": 70}

    first = client.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="inv-7")
    again = client.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="inv-7")

    assert first.status_code == again.status_code == 200, again.content
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert CreditEntry.objects.filter(kind="add").count() == 1
    assert AccountFactory(slug="acme").credits == 70
    other = client.post(
        URL, {**body, "amount": 71}, format="json", HTTP_IDEMPOTENCY_KEY="inv-7"
    )
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert AccountFactory(slug="acme").credits == 70


@pytest.mark.django_db(transaction=True)
def test_credits_post__concurrent_retries_with_one_key_add_once():
    account = AccountFactory(slug="acme", credits=0)
    member = grant(MembershipFactory(account=account).user, "add_credits")
    barrier = threading.Barrier(4)
    statuses: list[int] = []

    def post():
        try:
            client = client_for(member)
            barrier.wait(10)
            response = client.post(
                URL, {"amount": 25}, format="json", HTTP_IDEMPOTENCY_KEY="topup-1"
            )
            statuses.append(response.status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=post) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)

    assert statuses == [200] * 4
    assert CreditEntry.objects.filter(kind="add").count() == 1
    assert AccountFactory(slug="acme").credits == 25
