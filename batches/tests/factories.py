from __future__ import annotations

import factory

from accounts.tests.factories import AccountFactory
from batches.models import Batch


class BatchFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Batch

    account = factory.SubFactory(AccountFactory)
    name = factory.Sequence(lambda n: f"Campaign {n}")
    description = "Renewal reminders"
    priority = 0
    is_active = True
    batch_id = factory.Sequence(lambda n: f"batch-2025-10-25-144129-{n:06d}")
