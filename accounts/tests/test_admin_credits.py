from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.db.models import ProtectedError
from django.urls import reverse

from accounts.credits import account_suspend_for_credits, credits_add
from accounts.models import Account, CreditEntry
from accounts.tests.factories import AccountFactory, UserFactory
from batches.tests.factories import BatchFactory
from callcenter.actor import Actor
from jobs.tests.factories import JobFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:accounts_account_changelist"


def test_account_admin__add_credits_asks_for_an_amount_first(admin_client):
    account = AccountFactory(credits=0)
    response = admin_client.post(
        reverse(CHANGELIST), {"action": "add_credits", "_selected_action": [account.pk]}
    )
    assert response.status_code == 200
    assert "Add credits" in response.content.decode()
    assert not CreditEntry.objects.exists()


def test_account_admin__add_credits_goes_through_the_service(admin_client, admin_user):
    account = AccountFactory(credits=0)
    batch = BatchFactory(account=account)
    JobFactory(batch=batch)
    account_suspend_for_credits(account_id=account.pk)

    response = admin_client.post(
        reverse(CHANGELIST),
        {
            "action": "add_credits",
            "_selected_action": [account.pk],
            "apply": "1",
            "amount": "250",
            "note": "invoice 9",
        },
        follow=True,
    )

    assert "added 250 credits, balance 250; 1 batch(es) resumed" in (
        response.content.decode()
    )
    assert Account.objects.get(pk=account.pk).credits == 250
    batch.refresh_from_db()
    assert batch.is_active
    entry = CreditEntry.objects.get(kind="add")
    assert (entry.source, entry.actor) == ("admin", admin_user)


def test_account_admin__invalid_amount_shows_the_form_again(admin_client):
    account = AccountFactory(credits=0)
    response = admin_client.post(
        reverse(CHANGELIST),
        {
            "action": "add_credits",
            "_selected_action": [account.pk],
            "apply": "1",
            "amount": "-5",
        },
    )
    assert response.status_code == 200
    assert "greater than or equal to 1" in response.content.decode()
    assert Account.objects.get(pk=account.pk).credits == 0


def test_account_admin__action_needs_the_permission(client):
    AccountFactory()  # the changelist hides actions when it is empty
    staff = UserFactory(username="clerk", is_staff=True)

    staff.user_permissions.add(Permission.objects.get(codename="view_account"))
    staff.user_permissions.add(Permission.objects.get(codename="change_account"))
    client.force_login(staff)
    page = client.get(reverse(CHANGELIST))
    assert 'value="add_credits"' not in page.content.decode()
    staff.user_permissions.add(Permission.objects.get(codename="add_credits"))
    page = client.get(reverse(CHANGELIST))
    assert 'value="add_credits"' in page.content.decode()


def test_account_admin__credits_field_is_read_only_on_change(admin_client):
    account = AccountFactory(credits=7)
    page = admin_client.get(reverse("admin:accounts_account_change", args=[account.pk]))
    assert page.status_code == 200
    assert 'name="credits"' not in page.content.decode()


def test_account_admin__add_form_takes_no_balance(admin_client):
    """A new account starts at 0; credits come only through the ledger."""
    page = admin_client.get(reverse("admin:accounts_account_add"))
    assert 'name="credits"' not in page.content.decode()

    response = admin_client.post(
        reverse("admin:accounts_account_add"),
        {
            "name": "Typed",
            "slug": "typed",
            "credits": "5000",
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
        },
    )

    assert response.status_code == 302, response.content
    account = Account.objects.get(slug="typed")
    assert account.credits == 0
    assert not CreditEntry.objects.filter(account=account).exists()


def test_account_delete__keeps_the_ledger(admin_client):
    account = AccountFactory(credits=0)
    credits_add(account=account, amount=30, actor=Actor.system("tests"))

    with pytest.raises(ProtectedError):
        account.delete()
    page = admin_client.post(
        reverse("admin:accounts_account_delete", args=[account.pk]), {"post": "yes"}
    )

    assert page.status_code == 200  # "cannot delete", naming the ledger
    assert "credit entr" in page.content.decode()
    assert Account.objects.filter(pk=account.pk).exists()
    assert CreditEntry.objects.filter(account=account).count() == 1
