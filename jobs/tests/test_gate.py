"""The dial gate: the mark and every rule's check in one transaction
(jobs/rules/gate.py), with refusals that end a job and deferrals that put it
back without spending an attempt."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import Sum
from django.test.utils import CaptureQueriesContext

from accounts.models import CreditEntry
from batches.tests.factories import BatchFactory
from callcenter.tests.queries import statements_sent
from jobs import billing, lifecycle, rules
from jobs.claim import claim_jobs
from jobs.models import Job, JobEvent, JobStatus
from jobs.rules import Defer, GateContext, Refuse
from jobs.rules import gate as gate_module
from jobs.tests.factories import JobFactory

pytestmark = pytest.mark.django_db(transaction=True)


class FakeRule:
    """A rule stopping jobs by number, reading the batch's name in the gate."""

    COLUMNS = {"fake_batch_name": "b.name"}

    def __init__(self, verdicts):
        self.verdicts = verdicts
        self.seen: dict[int, dict] = {}

    def check(self, jobs, context: GateContext):
        found = {}
        for job in jobs:
            self.seen[job.pk] = dict(context.row(job))
            make = self.verdicts.get(job.phone_number)
            if make is not None:
                found[job.pk] = make(context)
        return found


@pytest.fixture
def fake_rule(monkeypatch):
    def install(verdicts):
        rule = FakeRule(verdicts)
        monkeypatch.setattr(rules, "RULES", [*rules.rules(), rule])
        gate_module._statement.cache_clear()
        gate_module._read_statement.cache_clear()
        return rule

    yield install
    gate_module._statement.cache_clear()
    gate_module._read_statement.cache_clear()


def claim_and_gate(limit=3):
    jobs = claim_jobs(worker_id="w1", token="t", limit=limit)
    payable = billing.reserve_calls(jobs, worker_id="w1", token="t")
    return lifecycle.mark_dialed(jobs=payable, worker_id="w1", token="t")


def test_gate__a_refused_job_is_cancelled_and_a_deferred_one_waits(account, fake_rule):
    batch = BatchFactory(account=account, name="Spring")
    ok = JobFactory(batch=batch, phone_number="+14155550100")
    refused = JobFactory(batch=batch, phone_number="+14155550101")
    deferred = JobFactory(batch=batch, phone_number="+14155550102")
    rule = fake_rule(
        {
            refused.phone_number: lambda c: Refuse("fake_no", "never"),
            deferred.phone_number: lambda c: Defer(
                "fake_later", c.now + timedelta(hours=2), "not yet"
            ),
        }
    )

    dialled = claim_and_gate()

    assert [job.pk for job in dialled] == [ok.pk]
    # The rule's data was read by the gate, from the job's batch.
    assert rule.seen[ok.pk]["fake_batch_name"] == "Spring"
    ok.refresh_from_db()
    refused.refresh_from_db()
    deferred.refresh_from_db()
    assert (ok.status, ok.attempts) == (JobStatus.IN_PROGRESS, 1)
    assert ok.dialed_at is not None
    assert (refused.status, refused.attempts) == (JobStatus.CANCELLED, 0)
    assert refused.dialed_at is None
    assert refused.started_at is None
    assert refused.cancel_reason == "Not dialled: never"
    assert (deferred.status, deferred.attempts) == (JobStatus.SCHEDULED, 0)
    assert deferred.claimed_by == ""
    assert deferred.dialed_at is None
    assert deferred.scheduled_at > ok.dialed_at + timedelta(minutes=119)
    events = {
        e.job_id: (e.action, e.changes["code"], e.source)
        for e in JobEvent.objects.all()
    }
    assert events == {
        refused.pk: ("refused", "fake_no", "worker"),
        deferred.pk: ("deferred", "fake_later", "worker"),
    }
    # Both reservations given back; the dialled job's is still held.
    for job in (refused, deferred):
        entries = CreditEntry.objects.filter(job_pk=job.pk)
        assert entries.count() == 2  # reserve, then its refund
        assert entries.aggregate(s=Sum("amount"))["s"] == 0
    assert CreditEntry.objects.get(job_pk=ok.pk).kind == "reserve"


@pytest.mark.postgres_only
def test_gate__mark_and_rules_data_are_one_statement_in_one_transaction(
    account, fake_rule
):
    """The rules' data is read by the statement that marks the jobs, inside
    the transaction that ends the refused ones: BEGIN, that statement, the
    refusal's own statements, COMMIT; then the refund."""
    batch = BatchFactory(account=account)
    JobFactory(batch=batch, phone_number="+14155550100")
    refused = JobFactory(batch=batch, phone_number="+14155550101")
    fake_rule({refused.phone_number: lambda c: Refuse("fake_no", "never")})
    jobs = claim_jobs(worker_id="w1", token="t", limit=2)
    payable = billing.reserve_calls(jobs, worker_id="w1", token="t")

    with CaptureQueriesContext(connection) as queries:
        lifecycle.mark_dialed(jobs=payable, worker_id="w1", token="t")

    sent = statements_sent(queries)
    assert sent[0] == "BEGIN"
    assert "WITH marked AS" in sent[1] or "EXECUTE callcenter_mark_dialed" in sent[1]
    commit = sent.index("COMMIT")
    # Ending the refused job happens before the mark commits.
    assert any('UPDATE "jobs_job"' in sql for sql in sent[2:commit])
    # No second read of the rules' data: the mark statement returned it.
    reads = [sql for sql in sent[2:commit] if "accounts_account" in sql]
    assert not reads


def test_gate__a_job_no_longer_held_is_dropped(account):
    job = JobFactory(batch=BatchFactory(account=account))
    [claimed] = claim_jobs(worker_id="w1", token="t", limit=1)
    Job.objects.filter(pk=job.pk).update(status=JobStatus.CANCELLED)

    assert lifecycle.mark_dialed(jobs=[claimed], worker_id="w1", token="t") == []
    job.refresh_from_db()
    assert job.attempts == 0
