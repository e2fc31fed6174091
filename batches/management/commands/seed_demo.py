"""`python manage.py seed_demo`: demo data for `make run`. Safe to run again."""

from __future__ import annotations

import os
import secrets

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils.translation import gettext, gettext_lazy

from accounts.models import Account, Membership
from batches.models import Batch
from batches.services import batch_create, batch_pause
from callcenter.actor import Actor
from callcenter.commands import TranslatedCommand
from jobs.models import Job
from jobs.rules.windows import all_day_calling_window

DEMO_BATCHES = [
    ("demo-renewals", "Policy renewals", 5, True, 40),
    ("demo-survey", "Customer satisfaction survey", 1, True, 30),
    ("demo-winback", "Win-back offers (script under review)", 3, False, 20),
]
FIRST_NAMES = ["Ana", "Luis", "Marta", "Jorge", "Lucía", "Pablo", "Sofía", "Diego"]


class Command(TranslatedCommand):
    help = gettext_lazy(
        "Create the admin user, a demo account with credits and a few batches."
    )

    def handle(self, *args, **options):
        actor = Actor.command("seed_demo")
        User = get_user_model()
        with transaction.atomic():
            account, _ = Account.objects.get_or_create(
                slug="demo", defaults={"name": "Demo Call Center", "credits": 100_000}
            )
            admin = User.objects.filter(username="admin").first()
            if admin is None:
                password = os.environ.get(
                    "DEMO_ADMIN_PASSWORD"
                ) or secrets.token_urlsafe(12)
                admin = User.objects.create_superuser(
                    "admin", "admin@example.com", password
                )
                self.stdout.write(
                    self.style.SUCCESS(
                        gettext("Created superuser 'admin' with password: %(password)s")
                        % {"password": password}
                    )
                )
            else:
                self.stdout.write(
                    gettext("Superuser 'admin' already exists; password unchanged.")
                )
            Membership.objects.get_or_create(user=admin, defaults={"account": account})

            for batch_id, name, priority, active, size in DEMO_BATCHES:
                if Batch.all_objects.filter(batch_id=batch_id).exists():
                    continue
                # An all-day window: `make run` must dial at any hour (the
                # demo numbers are Spanish, fictional, and the dialer is
                # simulated); real batches default to 08:00-21:00 local.
                batch = batch_create(
                    account=account,
                    name=name,
                    priority=priority,
                    batch_id=batch_id,
                    actor=actor,
                    calling_window=all_day_calling_window(),
                )
                Job.objects.bulk_create(
                    Job(
                        account=account,
                        batch=batch,
                        phone_number=f"+3491{priority}{i:06d}",
                        variables={"first_name": FIRST_NAMES[i % len(FIRST_NAMES)]},
                        priority=i % 3,
                    )
                    for i in range(size)
                )
                if not active:
                    batch_pause(batch=batch, actor=actor, reason="Script under review")
        self.stdout.write(self.style.SUCCESS(gettext("Demo data ready.")))
