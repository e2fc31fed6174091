from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from accounts.models import Account, CreditEntry
from accounts.services import account_suspend_for_credits
from accounts.tests.factories import AccountFactory, UserFactory
from batches.tests.factories import BatchFactory
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
