"""Do-not-call lists: the API, the dial gate's refusal, and opt-outs."""

from __future__ import annotations

import pytest
from django.db.models import Sum

from accounts.models import AccountEvent, CreditEntry
from accounts.tests.factories import AccountFactory
from batches.tests.factories import BatchFactory
from callcenter.actor import Actor
from jobs import billing, dnc, lifecycle
from jobs.claim import claim_jobs
from jobs.dialers.simulated import SimulatedDialer
from jobs.models import CallAttempt, DncEntry, DncSource, Job, JobEvent, JobStatus
from jobs.tests.factories import JobFactory
from jobs.worker import CallWorker

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/v1/account/dnc"
STAFF = Actor.system("staff in tests")


def gate_round(limit=10):
    jobs = claim_jobs(worker_id="w1", token="t", limit=limit)
    payable = billing.reserve_calls(jobs, worker_id="w1", token="t")
    return lifecycle.mark_dialed(jobs=payable, worker_id="w1", token="t")


# --- the API -------------------------------------------------------------


def test_dnc_api__add_list_and_remove(api_client, account):
    response = api_client.post(
        URL,
        ["+1 (415) 555-0100", "+14155550101", "+14155550100"],
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json() == {"added": 2, "already": 0}
    again = api_client.post(URL, {"numbers": ["+14155550101"]}, format="json")
    assert again.json() == {"added": 0, "already": 1}

    listed = api_client.get(URL).json()
    assert listed["count"] == 2
    assert {e["phone_number"] for e in listed["results"]} == {
        "+14155550100",
        "+14155550101",
    }
    assert {e["source"] for e in listed["results"]} == {"api"}
    assert api_client.get(URL, {"page_size": 1}).json()["next"]

    removed = api_client.delete(f"{URL}/%2B14155550100")
    assert removed.status_code == 204
    assert api_client.delete(f"{URL}/%2B14155550100").status_code == 404
    assert list(
        DncEntry.objects.filter(account=account).values_list("phone_number", flat=True)
    ) == ["+14155550101"]
    actions = list(
        AccountEvent.objects.filter(account=account)
        .order_by("id")
        .values_list("action", "source")
    )
    assert actions == [("dnc_added", "api"), ("dnc_removed", "api")]


def test_dnc_api__csv_upload(api_client, account):
    body = b"phone_number,name\n+14155550100,Ana\n(415) 555-0101,Bo\n"
    response = api_client.post(URL, body, content_type="text/csv")

    assert response.status_code == 201, response.content
    assert response.json()["added"] == 2
    assert DncEntry.objects.filter(account=account).count() == 2


def test_dnc_api__bad_numbers_are_a_400_naming_the_rows_and_nothing_is_added(
    api_client, account
):
    body = b"phone_number\n+14155550100\nnot a number\n+1415\n"
    response = api_client.post(URL, body, content_type="text/csv")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_rows"
    assert [(r["row"], r["phone_number"]) for r in error["rows"]] == [
        (3, "not a number"),
        (4, "+1415"),
    ]
    assert error["rows"][0]["errors"] == [
        "phone_number: 'not a number' is not a valid phone number."
    ]
    json_bad = api_client.post(URL, ["+14155550100", 12], format="json")
    assert json_bad.status_code == 400
    assert json_bad.json()["error"]["rows"][0]["row"] == 2
    assert not DncEntry.objects.exists()
    assert api_client.post(URL, {"numbers": "x"}, format="json").status_code == 400
    assert api_client.delete(f"{URL}/garbage").status_code == 400


def test_dnc_api__viewers_read_only_and_accounts_apart(
    api_client, viewer_client, other_client, account
):
    api_client.post(URL, ["+14155550100"], format="json")

    assert viewer_client.get(URL).json()["count"] == 1
    assert viewer_client.post(URL, ["+14155550101"], format="json").status_code == 403
    assert other_client.get(URL).json()["count"] == 0
    assert other_client.delete(f"{URL}/%2B14155550100").status_code == 404


# --- the gate ------------------------------------------------------------


@pytest.mark.parametrize("system_wide", [False, True])
def test_gate__a_number_on_a_dnc_list_is_cancelled_not_dialled(account, system_wide):
    batch = BatchFactory(account=account)
    listed = JobFactory(batch=batch, phone_number="+14155550100")
    free = JobFactory(batch=batch, phone_number="+14155550101")
    dnc.dnc_add(
        account=None if system_wide else account,
        numbers=[listed.phone_number],
        actor=STAFF,
    )

    dialled = gate_round()

    assert [job.pk for job in dialled] == [free.pk]
    listed.refresh_from_db()
    assert listed.status == JobStatus.CANCELLED
    assert listed.stop_code == "dnc"
    assert listed.attempts == 0
    which = "system-wide" if system_wide else "account's"
    assert f"on the {which} do-not-call list since" in listed.cancel_reason
    event = JobEvent.objects.get(job=listed)
    assert (event.action, event.changes["code"]) == ("refused", "dnc")
    assert not CallAttempt.objects.filter(job_id=listed.pk).exists()
    spent = CreditEntry.objects.filter(job_pk=listed.pk).aggregate(s=Sum("amount"))
    assert spent["s"] == 0


def test_gate__another_accounts_list_does_not_apply(account):
    other = AccountFactory()
    job = JobFactory(batch=BatchFactory(account=account))
    dnc.dnc_add(account=other, numbers=[job.phone_number], actor=STAFF)

    assert [j.pk for j in gate_round()] == [job.pk]


# --- opt-out ---------------------------------------------------------------


def test_opt_out_api__lists_the_number_and_cancels_its_open_jobs(api_client, account):
    first = BatchFactory(account=account)
    second = BatchFactory(account=account)
    job = JobFactory(batch=first, phone_number="+14155550100")
    same_number = JobFactory(batch=second, phone_number="+14155550100")
    done = JobFactory(
        batch=BatchFactory(account=account),
        phone_number="+14155550100",
        status=JobStatus.COMPLETED,
    )
    elsewhere = JobFactory(phone_number="+14155550100")  # another account
    other_number = JobFactory(batch=first, phone_number="+14155550101")

    response = api_client.post(f"/api/v1/jobs/{job.pk}/opt-out")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["added"] is True
    assert sorted(body["cancelled_jobs"]) == sorted([job.pk, same_number.pk])
    entry = DncEntry.objects.get(account=account)
    assert (entry.phone_number, entry.source, entry.job_pk) == (
        "+14155550100",
        DncSource.OPT_OUT,
        job.pk,
    )
    statuses = {
        j.pk: (j.status, j.stop_code)
        for j in Job.objects.filter(
            pk__in=[job.pk, same_number.pk, done.pk, elsewhere.pk, other_number.pk]
        )
    }
    assert statuses == {
        job.pk: (JobStatus.CANCELLED, "opt_out"),
        same_number.pk: (JobStatus.CANCELLED, "opt_out"),
        done.pk: (JobStatus.COMPLETED, ""),
        elsewhere.pk: (JobStatus.PENDING, ""),
        other_number.pk: (JobStatus.PENDING, ""),
    }
    events = JobEvent.objects.filter(action="cancelled").values_list(
        "job_id", "source", "changes"
    )
    assert {(j, s, c["code"]) for j, s, c in events} == {
        (job.pk, "api", "opt_out"),
        (same_number.pk, "api", "opt_out"),
    }


def test_opt_out_reported_by_the_dialer(account):
    """A call whose result carries opt_out: the number is listed at once and
    its other open jobs cancelled; the call itself is recorded normally."""
    first = BatchFactory(account=account, priority=5)
    second = BatchFactory(account=account)
    job = JobFactory(batch=first, phone_number="+14155550100")
    later = JobFactory(batch=second, phone_number="+14155550100")
    dialer = SimulatedDialer(
        call_seconds=(0.0, 0.0), opt_out_numbers=frozenset({"+14155550100"})
    )
    worker = CallWorker(dialer=dialer, worker_id="w1", listen=False, max_jobs=1)

    worker.run()

    job.refresh_from_db()
    later.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
    assert job.result["opt_out"] is True
    assert later.status == JobStatus.CANCELLED
    assert later.stop_code == "opt_out"
    entry = DncEntry.objects.get(account=account)
    assert (entry.source, entry.job_pk) == ("opt_out", job.pk)
    event = JobEvent.objects.get(job=later)
    assert (event.source, event.actor_label) == ("worker", "w1")
