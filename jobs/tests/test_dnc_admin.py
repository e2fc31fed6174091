"""The admin: both DNC lists, the job page's explanation, the batch page's
summary of reasons."""

from __future__ import annotations

import pytest

from accounts.models import AccountEvent
from batches.tests.factories import BatchFactory
from callcenter.actor import Actor
from jobs import dnc
from jobs.models import DncEntry
from jobs.tests.factories import JobFactory

pytestmark = pytest.mark.django_db

ADD = "/admin/jobs/dncentry/add/"


def test_admin__staff_add_to_the_system_list_and_an_accounts(admin_client, account):
    system = admin_client.post(ADD, {"phone_number": "+1 415 555 0100", "note": "x"})
    assert system.status_code == 302, system.content
    own = admin_client.post(
        ADD, {"account": account.pk, "phone_number": "+14155550101", "note": ""}
    )
    assert own.status_code == 302, own.content
    bad = admin_client.post(ADD, {"phone_number": "nope"})
    assert bad.status_code == 200
    assert "Not a valid phone number." in bad.content.decode()

    entries = {(e.account_id, e.phone_number, e.source) for e in DncEntry.objects.all()}
    assert entries == {
        (None, "+14155550100", "admin"),
        (account.pk, "+14155550101", "admin"),
    }
    event = AccountEvent.objects.get(account=account)
    assert (event.action, event.source) == ("dnc_added", "admin")
    page = admin_client.get("/admin/jobs/dncentry/").content.decode()
    assert "system-wide" in page


def test_admin__removing_an_accounts_entry_is_audited(admin_client, account):
    dnc.dnc_add(account=account, numbers=["+14155550100"], actor=Actor.system("t"))
    entry = DncEntry.objects.get()

    response = admin_client.post(
        f"/admin/jobs/dncentry/{entry.pk}/delete/", {"post": "yes"}
    )

    assert response.status_code == 302
    assert not DncEntry.objects.exists()
    assert AccountEvent.objects.filter(action="dnc_removed").count() == 1


def test_admin__job_page_explains_and_batch_page_sums(admin_client, account):
    batch = BatchFactory(account=account)
    job = JobFactory(batch=batch)
    JobFactory(batch=batch)
    dnc.dnc_add(account=account, numbers=[job.phone_number], actor=Actor.system("t"))

    job_page = admin_client.get(f"/admin/jobs/job/{job.pk}/change/").content.decode()
    batch_page = admin_client.get(
        f"/admin/batches/batch/{batch.pk}/change/"
    ).content.decode()

    assert "<code>dnc</code>" in job_page
    assert "account&#x27;s do-not-call list since" in job_page
    assert "1 on a do-not-call list" in batch_page
