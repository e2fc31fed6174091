from __future__ import annotations

import pytest
from django.contrib.admin import helpers
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from accounts.tests.factories import UserFactory
from batches import services as batch_services
from callcenter.actor import Source
from jobs.models import Job, JobEvent, JobStatus
from jobs.tests.factories import JobFactory

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:jobs_job_changelist")


def run_action(client, action, jobs, **extra):
    return client.post(
        CHANGELIST,
        {
            "action": action,
            helpers.ACTION_CHECKBOX_NAME: [j.pk for j in jobs],
            **extra,
        },
        follow=True,
    )


def texts(response):
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def viewer_client(db):
    user = UserFactory(username="viewer", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(codename__in=["view_job", "view_jobevent"])
    )
    client = Client()
    client.force_login(user)
    return client


def test_job_changelist__filters_by_status_batch_and_account(admin_client):
    done = JobFactory(status=JobStatus.DONE)
    completed = JobFactory(status=JobStatus.COMPLETED, batch=done.batch)
    pending = JobFactory()

    by_status = admin_client.get(CHANGELIST, {"status": "completed"})
    by_batch = admin_client.get(CHANGELIST, {"batch__id__exact": pending.batch_id})
    by_account = admin_client.get(
        CHANGELIST, {"account__id__exact": pending.account_id}
    )

    # The legacy `done` is listed with `completed`.
    assert set(by_status.context["cl"].result_list) == {done, completed}
    assert list(by_batch.context["cl"].result_list) == [pending]
    assert list(by_account.context["cl"].result_list) == [pending]


def test_job_changelist__searches_phone_number_typed_with_spaces(admin_client):
    job = JobFactory(phone_number="+14155550123")
    JobFactory(phone_number="+14155550999")

    response = admin_client.get(CHANGELIST, {"q": "+1 415 555 0123"})

    assert list(response.context["cl"].result_list) == [job]


def test_cancel_selected__cancels_and_counts_finished(admin_client, admin_user):
    a, b = JobFactory(), JobFactory(status=JobStatus.IN_PROGRESS)
    finished = JobFactory(status=JobStatus.COMPLETED)

    response = run_action(admin_client, "cancel_selected", [a, b, finished], post="yes")

    assert texts(response) == ["2 jobs cancelled; 1 was already finished"]
    for job in (a, b):
        job.refresh_from_db()
        assert job.status == JobStatus.CANCELLED
        event = JobEvent.objects.get(job=job, action="cancelled")
        assert (event.source, event.actor) == (Source.ADMIN, admin_user)
    finished.refresh_from_db()
    assert finished.status == JobStatus.COMPLETED


def test_cancel_selected__asks_for_confirmation_first(admin_client):
    a, b = JobFactory(), JobFactory(status=JobStatus.IN_PROGRESS)
    finished = JobFactory(status=JobStatus.FAILED)

    response = run_action(admin_client, "cancel_selected", [a, b, finished])

    html = response.content.decode()
    assert response.templates[0].name == "admin/jobs/job/cancel_confirmation.html"
    assert "Yes, cancel 2 jobs" in html
    assert "1 selected job already finished" in html
    assert a.phone_number in html
    a.refresh_from_db()
    assert a.status == JobStatus.PENDING


def test_requeue_selected__requeues_failed_and_suspended_only(admin_client, admin_user):
    failed = JobFactory(status=JobStatus.FAILED, attempts=3, max_attempts=3)
    suspended = JobFactory(status=JobStatus.SUSPENDED)
    pending = JobFactory()

    response = run_action(
        admin_client, "requeue_selected", [failed, suspended, pending]
    )

    assert texts(response) == ["2 jobs requeued; 1 was not failed or suspended"]
    for job in (failed, suspended):
        job.refresh_from_db()
        assert job.status == JobStatus.PENDING
        event = JobEvent.objects.get(job=job, action="requeued")
        assert (event.source, event.actor) == (Source.ADMIN, admin_user)


def test_requeue_selected__reports_jobs_of_cancelled_batches(
    admin_client, system_actor
):
    job = JobFactory(status=JobStatus.FAILED)
    batch_services.batch_cancel(batch=job.batch, actor=system_actor)

    response = run_action(admin_client, "requeue_selected", [job])

    assert "belongs to a cancelled batch" in texts(response)[0]
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED


def test_job_changelist__view_only_staff_sees_no_actions(viewer_client):
    JobFactory()
    response = viewer_client.get(CHANGELIST)
    assert response.status_code == 200
    assert response.context["action_form"] is None


@pytest.mark.parametrize("action", ["cancel_selected", "requeue_selected"])
def test_job_actions__view_only_staff_gets_403(viewer_client, action):
    job = JobFactory(status=JobStatus.FAILED)
    response = viewer_client.post(
        CHANGELIST,
        {"action": action, helpers.ACTION_CHECKBOX_NAME: [job.pk], "post": "yes"},
    )
    assert response.status_code == 403
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED


def test_job_admin__no_add_no_delete_no_bulk_delete(admin_client):
    JobFactory()
    choices = admin_client.get(CHANGELIST).context["action_form"].fields["action"]
    assert [n for n, _ in choices.choices][1:] == [
        "cancel_selected",
        "requeue_selected",
    ]
    assert admin_client.get(reverse("admin:jobs_job_add")).status_code == 403


def test_job_change_form__worker_owned_fields_are_read_only(admin_client):
    job = JobFactory()
    form = (
        admin_client.get(reverse("admin:jobs_job_change", args=[job.pk]))
        .context["adminform"]
        .form
    )
    assert set(form.fields) == {
        "phone_number",
        "variables",
        "priority",
        "scheduled_at",
        "max_attempts",
    }


def test_job_change_form__in_progress_job_is_entirely_read_only(admin_client):
    job = JobFactory(status=JobStatus.IN_PROGRESS, claimed_by="w1")
    form = (
        admin_client.get(reverse("admin:jobs_job_change", args=[job.pk]))
        .context["adminform"]
        .form
    )
    assert set(form.fields) == set()


def test_job_change_form__saves_edits_of_a_pending_job(admin_client):
    job = JobFactory(priority=0)

    response = admin_client.post(
        reverse("admin:jobs_job_change", args=[job.pk]),
        {
            "phone_number": job.phone_number,
            "variables": '{"first_name": "Ana"}',
            "priority": "5",
            "scheduled_at_0": "",
            "scheduled_at_1": "",
            "max_attempts": "3",
            "events-TOTAL_FORMS": "0",
            "events-INITIAL_FORMS": "0",
        },
    )

    assert response.status_code == 302
    job.refresh_from_db()
    assert job.priority == 5


def test_job_admin_save_model__does_not_overwrite_a_claim_made_since(rf, admin_user):
    from django.contrib import admin as django_admin

    job = JobFactory(priority=0)
    stale = Job.objects.get(pk=job.pk)  # what the admin loaded
    # A worker claims the job between the admin's read and its save.
    Job.objects.filter(pk=job.pk).update(
        status=JobStatus.IN_PROGRESS, claimed_by="worker-1"
    )
    stale.priority = 5

    class Form:
        changed_data = ["priority"]

    request = rf.post("/")
    request.user = admin_user
    django_admin.site._registry[Job].save_model(request, stale, Form(), True)

    job.refresh_from_db()
    assert job.priority == 5
    assert (job.status, job.claimed_by) == (JobStatus.IN_PROGRESS, "worker-1")


def test_job_event_admin__is_read_only(admin_client, api_actor):
    from jobs.services import job_cancel

    job = JobFactory()
    job_cancel(job=job, actor=api_actor)

    listing = admin_client.get(reverse("admin:jobs_jobevent_changelist"))
    add = admin_client.get(reverse("admin:jobs_jobevent_add"))

    assert listing.status_code == 200
    assert "cancelled" in listing.content.decode()
    assert add.status_code == 403
