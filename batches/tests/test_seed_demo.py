from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from accounts.models import Account
from batches.models import Batch
from jobs.models import Job

pytestmark = pytest.mark.django_db


def test_seed_demo__creates_admin_account_and_batches_once(monkeypatch, settings):
    monkeypatch.setenv("DEMO_ADMIN_PASSWORD", "demo-pass-123")
    # The product default (the tests' is all-day): the demo sets its own.
    settings.CALLING_WINDOW_DEFAULT = "08:00-21:00"
    out = StringIO()
    call_command("seed_demo", stdout=out)
    assert "demo-pass-123" in out.getvalue()
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser
    assert admin.check_password("demo-pass-123")
    account = Account.objects.get(slug="demo")
    assert account.credits > 0
    assert admin.membership.account == account
    batches = Batch.objects.filter(account=account)
    assert batches.count() == 3
    assert batches.filter(is_active=False).get().pause_reason
    # `make run` dials at any hour: every demo batch has an all-day window.
    for batch in batches:
        assert batch.calling_window["start"] == "00:00"
        assert batch.calling_window["end"] == "24:00"
        assert len(batch.calling_window["days"]) == 7
    jobs = Job.objects.count()
    assert jobs > 0

    out = StringIO()
    call_command("seed_demo", stdout=out)
    assert "already exists" in out.getvalue()
    assert Batch.objects.count() == 3
    assert Job.objects.count() == jobs


def test_seed_demo__generates_and_prints_a_password_when_none_given(monkeypatch):
    monkeypatch.delenv("DEMO_ADMIN_PASSWORD", raising=False)
    out = StringIO()
    call_command("seed_demo", stdout=out)
    line = next(x for x in out.getvalue().splitlines() if "password" in x)
    password = line.rsplit(" ", 1)[-1]
    assert get_user_model().objects.get(username="admin").check_password(password)
