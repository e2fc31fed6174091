from __future__ import annotations

import factory

from accounts.tests.factories import AccountFactory
from batches.tests.factories import BatchFactory
from jobs.models import Job, JobStatus


class JobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Job

    batch = factory.SubFactory(BatchFactory)
    account = factory.LazyAttribute(
        lambda j: j.batch.account if j.batch else AccountFactory()
    )
    phone_number = factory.Sequence(lambda n: f"+1415555{n:04d}")
    variables = factory.LazyFunction(lambda: {"first_name": "Ana"})
    status = JobStatus.PENDING
