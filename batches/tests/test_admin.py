from __future__ import annotations

import pytest
from django.contrib.admin import helpers
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from accounts.tests.factories import UserFactory
from batches import services
from batches.models import Batch, BatchEvent
from batches.tests.factories import BatchFactory
from callcenter.actor import Actor, Source
from jobs.models import Job, JobStatus
from jobs.tests.factories import JobFactory

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:batches_batch_changelist")


def change_url(batch):
    return reverse("admin:batches_batch_change", args=[batch.pk])


def make_jobs(batch, **statuses):
    for status, n in statuses.items():
        for _ in range(n):
            JobFactory(batch=batch, status=status)


def run_action(client, action, batches, **extra):
    return client.post(
        CHANGELIST,
        {
            "action": action,
            helpers.ACTION_CHECKBOX_NAME: [b.pk for b in batches],
            **extra,
        },
        follow=True,
    )


def texts(response):
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def viewer_client(db):
    """A staff member who may look at batches and jobs, and change nothing."""
    user = UserFactory(username="viewer", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            codename__in=["view_batch", "view_job", "view_batchevent", "view_jobevent"]
        )
    )
    client = Client()
    client.force_login(user)
    return client


def audit(batch, action):
    return BatchEvent.objects.get(batch=batch, action=action)


# --- the list ---------------------------------------------------------------


def test_batch_changelist__shows_state_progress_and_calls_in_progress(
    admin_client, system_actor
):
    batch = BatchFactory(name="Renewals")
    make_jobs(batch, pending=2, in_progress=1, completed=3, failed=1)
    paused = BatchFactory(name="Survey")
    services.batch_pause(batch=paused, actor=system_actor, reason="wrong script")

    response = admin_client.get(CHANGELIST)

    assert response.status_code == 200
    html = response.content.decode()
    assert "Renewals" in html
    assert batch.batch_id in html
    assert '<span class="cc-badge cc-active">Active</span>' in html
    assert '<span class="cc-badge cc-paused">Paused</span>' in html
    assert "wrong script" in html
    assert "<small>4 / 7</small>" in html
    assert "Pending: 2 · In progress: 1 · Completed: 3 · Failed: 1" in html
    assert '<td class="field-calls_in_progress">1</td>' in html
    assert "Select batch to change" in html  # the plural-aware title


def test_batch_changelist__query_count_does_not_grow_with_batches(
    admin_client, django_assert_num_queries
):
    for _ in range(3):
        make_jobs(BatchFactory(), pending=2, completed=1)
    # session, user, account filter, counts x2, page, status counts
    with django_assert_num_queries(7):
        assert admin_client.get(CHANGELIST).status_code == 200

    for _ in range(30):
        make_jobs(BatchFactory(), pending=1, in_progress=1)
    with django_assert_num_queries(7):
        response = admin_client.get(CHANGELIST)
    assert response.context["cl"].result_count == 33


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("active", {"active"}),
        ("paused", {"paused"}),
        ("cancelled", {"cancelled"}),
        ("completed", {"completed"}),
    ],
)
def test_batch_changelist__filters_by_state(
    admin_client, system_actor, state, expected
):
    BatchFactory(name="active")
    services.batch_pause(batch=BatchFactory(name="paused"), actor=system_actor)
    services.batch_cancel(batch=BatchFactory(name="cancelled"), actor=system_actor)
    BatchFactory(name="completed", completed_at="2025-10-25T12:00:00Z")

    response = admin_client.get(CHANGELIST, {"state": state})

    assert {b.name for b in response.context["cl"].result_list} == expected


def test_batch_changelist__filters_by_account_and_searches_name_and_batch_id(
    admin_client,
):
    a = BatchFactory(name="Renewals", batch_id="batch-2025-10-25-144129-862530")
    b = BatchFactory(name="Survey")

    by_account = admin_client.get(CHANGELIST, {"account__id__exact": b.account_id})
    by_id = admin_client.get(CHANGELIST, {"q": "144129-862530"})
    by_name = admin_client.get(CHANGELIST, {"q": "surv"})

    assert list(by_account.context["cl"].result_list) == [b]
    assert list(by_id.context["cl"].result_list) == [a]
    assert list(by_name.context["cl"].result_list) == [b]


def test_batch_changelist__hides_deleted_batches(admin_client, system_actor):
    services.batch_delete(batch=BatchFactory(name="Gone"), actor=system_actor)
    assert "Gone" not in admin_client.get(CHANGELIST).content.decode()


# --- actions: pause and resume ---------------------------------------------------


@pytest.fixture
def other_staff_actor():
    return Actor(source=Source.ADMIN, user=UserFactory(is_staff=True))


def test_pause_selected__pauses_and_counts_the_already_paused(
    admin_client, admin_user, other_staff_actor
):
    a, b, c = BatchFactory(), BatchFactory(), BatchFactory()
    services.batch_pause(batch=c, actor=other_staff_actor)

    response = run_action(admin_client, "pause_selected", [a, b, c])

    assert response.status_code == 200
    assert texts(response) == ["2 batches paused; 1 was already paused"]
    for batch in (a, b):
        batch.refresh_from_db()
        assert batch.is_active is False
        assert batch.pause_source == Source.ADMIN
        assert batch.paused_by == admin_user
        event = audit(batch, BatchEvent.Action.PAUSED)
        assert event.source == Source.ADMIN
        assert event.actor == admin_user
        assert event.remote_addr == "127.0.0.1"
    assert c.events.filter(actor=admin_user).count() == 0


def test_pause_selected__takes_over_a_credits_pause(admin_client, admin_user):
    """Staff pausing a batch the system paused for credits makes it a staff
    pause: a top-up no longer resumes it."""
    from accounts.credits import account_suspend_for_credits, credits_add

    batch = BatchFactory(account__credits=0)
    account_suspend_for_credits(account_id=batch.account_id)

    response = run_action(admin_client, "pause_selected", [batch])

    assert texts(response) == ["1 batch paused"]
    credits_add(account=batch.account, amount=100, actor=Actor.system("tests"))
    batch.refresh_from_db()
    assert batch.is_active is False
    assert (batch.pause_source, batch.paused_by) == (Source.ADMIN, admin_user)
    assert batch.paused_by_staff is True


def test_pause_selected__across_a_whole_filter(admin_client, account):
    mine = [BatchFactory(account=account) for _ in range(3)]
    other = BatchFactory()

    response = admin_client.post(
        f"{CHANGELIST}?account__id__exact={account.pk}",
        {
            "action": "pause_selected",
            "select_across": "1",
            helpers.ACTION_CHECKBOX_NAME: [mine[0].pk],
        },
        follow=True,
    )

    assert texts(response) == ["3 batches paused"]
    assert {b.state for b in Batch.objects.filter(account=account)} == {"paused"}
    other.refresh_from_db()
    assert other.is_active is True


def test_pause_selected__all_already_paused_is_a_warning(
    admin_client, other_staff_actor
):
    batch = BatchFactory()
    services.batch_pause(batch=batch, actor=other_staff_actor)

    response = run_action(admin_client, "pause_selected", [batch])

    messages = list(get_messages(response.wsgi_request))
    assert [str(m) for m in messages] == ["No batches paused; 1 was already paused"]
    assert messages[0].level_tag == "warning"


def test_resume_selected__resumes_and_reports_cancelled_batches_as_errors(
    admin_client, admin_user, system_actor
):
    paused, active, cancelled = BatchFactory(), BatchFactory(), BatchFactory()
    services.batch_pause(batch=paused, actor=system_actor)
    services.batch_cancel(batch=cancelled, actor=system_actor)

    response = run_action(admin_client, "resume_selected", [paused, active, cancelled])

    assert response.status_code == 200
    found = texts(response)
    assert found[0] == "1 batch resumed; 1 was already active"
    assert "cannot be resumed" in found[1]
    paused.refresh_from_db()
    assert paused.is_active is True
    event = audit(paused, BatchEvent.Action.RESUMED)
    assert (event.source, event.actor) == (Source.ADMIN, admin_user)
    cancelled.refresh_from_db()
    assert cancelled.is_active is False


# --- actions: cancel ---------------------------------------------------------------


def test_cancel_selected__asks_for_confirmation_with_job_counts(admin_client):
    a, b = BatchFactory(name="Renewals"), BatchFactory(name="Survey")
    make_jobs(a, pending=3, in_progress=1, completed=2)
    make_jobs(b, scheduled=0, suspended=2)

    response = admin_client.post(
        CHANGELIST,
        {"action": "cancel_selected", helpers.ACTION_CHECKBOX_NAME: [a.pk, b.pk]},
    )

    assert response.status_code == 200
    assert response.templates[0].name == "admin/batches/batch/cancel_confirmation.html"
    rows = {
        r["batch"].name: (r["to_cancel"], r["kept"]) for r in response.context["rows"]
    }
    assert rows == {"Renewals": (4, 2), "Survey": (2, 0)}
    assert "Yes, cancel 2 batches and 6 jobs" in response.content.decode()
    a.refresh_from_db()
    assert a.cancelled_at is None  # nothing happens before the confirmation


def test_cancel_selected__confirmed_cancels_batches_and_their_jobs(
    admin_client, admin_user
):
    a, b = BatchFactory(), BatchFactory()
    make_jobs(a, pending=3, completed=2)
    make_jobs(b, in_progress=1)

    response = run_action(admin_client, "cancel_selected", [a, b], post="yes")

    assert texts(response) == ["2 batches cancelled; 4 jobs cancelled"]
    assert Job.objects.filter(status=JobStatus.CANCELLED).count() == 4
    assert Job.objects.filter(status=JobStatus.COMPLETED).count() == 2
    for batch in (a, b):
        batch.refresh_from_db()
        assert batch.state == Batch.State.CANCELLED
        event = audit(batch, BatchEvent.Action.CANCELLED)
        assert (event.source, event.actor) == (Source.ADMIN, admin_user)


def test_cancel_selected__counts_already_cancelled(admin_client, system_actor):
    a, b = BatchFactory(), BatchFactory()
    services.batch_cancel(batch=b, actor=system_actor)

    response = run_action(admin_client, "cancel_selected", [a, b], post="yes")

    assert texts(response) == [
        "1 batch cancelled; 1 was already cancelled; 0 jobs cancelled"
    ]


# --- actions: delete ---------------------------------------------------------------


def test_delete_selected__is_replaced_by_the_service_delete(admin_client):
    BatchFactory()
    actions = admin_client.get(CHANGELIST).context["action_form"].fields["action"]
    names = [name for name, _ in actions.choices]
    assert "delete_selected" not in names
    assert names[1:] == [
        "pause_selected",
        "resume_selected",
        "cancel_selected",
        "delete_batches",
        "export_results",
    ]


def test_delete_batches__confirmation_shows_counts_and_offers_deleting_jobs(
    admin_client,
):
    batch = BatchFactory()
    make_jobs(batch, pending=2, failed=1, completed=1)

    response = admin_client.post(
        CHANGELIST,
        {"action": "delete_batches", helpers.ACTION_CHECKBOX_NAME: [batch.pk]},
    )

    html = response.content.decode()
    assert response.status_code == 200
    assert 'name="delete_jobs"' in html
    assert "Also delete all 4 jobs" in html
    assert response.context["to_cancel"] == 2
    assert response.context["kept"] == 2
    assert Batch.objects.filter(pk=batch.pk).exists()


def test_delete_batches__confirmed_keeps_history(admin_client, admin_user):
    batch = BatchFactory()
    make_jobs(batch, pending=2, completed=1)

    response = run_action(admin_client, "delete_batches", [batch], post="yes")

    assert texts(response) == ["1 batch deleted; 2 jobs cancelled"]
    assert not Batch.objects.filter(pk=batch.pk).exists()
    assert Batch.all_objects.get(pk=batch.pk).deleted_at is not None
    assert sorted(Job.objects.filter(batch=batch).values_list("status", flat=True)) == [
        "cancelled",
        "cancelled",
        "completed",
    ]
    assert Job.objects.filter(cancel_reason="Batch deleted").count() == 2
    event = BatchEvent.objects.get(batch_id=batch.pk, action=BatchEvent.Action.DELETED)
    assert (event.source, event.actor) == (Source.ADMIN, admin_user)
    assert event.changes["delete_jobs"] is False


def test_delete_batches__with_delete_jobs_removes_them(admin_client):
    batch = BatchFactory()
    make_jobs(batch, pending=2, completed=1)

    response = run_action(
        admin_client, "delete_batches", [batch], post="yes", delete_jobs="1"
    )

    assert texts(response) == ["1 batch deleted; 3 jobs deleted"]
    assert not Job.objects.filter(batch_id=batch.pk).exists()
    assert BatchEvent.objects.get(
        batch_id=batch.pk, action=BatchEvent.Action.DELETED
    ).changes["delete_jobs"]


def test_delete_view__shows_the_service_confirmation_then_deletes(admin_client):
    batch = BatchFactory()
    make_jobs(batch, pending=1)
    url = reverse("admin:batches_batch_delete", args=[batch.pk])

    page = admin_client.get(url)
    assert page.status_code == 200
    assert "Also delete all 1 job" in page.content.decode()

    response = admin_client.post(url, {"post": "yes"}, follow=True)
    assert texts(response) == ["1 batch deleted; 1 job cancelled"]
    assert not Batch.objects.filter(pk=batch.pk).exists()


# --- permissions -------------------------------------------------------------------


def test_changelist__view_only_staff_may_only_export(viewer_client):
    BatchFactory(name="Renewals")
    response = viewer_client.get(CHANGELIST)
    assert response.status_code == 200
    assert "Renewals" in response.content.decode()
    actions = response.context["action_form"].fields["action"]
    assert [name for name, _ in actions.choices][1:] == ["export_results"]


@pytest.mark.parametrize(
    "action", ["pause_selected", "resume_selected", "cancel_selected", "delete_batches"]
)
@pytest.mark.parametrize("confirmed", [False, True])
def test_actions__view_only_staff_gets_403(viewer_client, action, confirmed):
    batch = BatchFactory()
    data = {"action": action, helpers.ACTION_CHECKBOX_NAME: [batch.pk]}
    if confirmed:
        data["post"] = "yes"

    response = viewer_client.post(CHANGELIST, data)

    assert response.status_code == 403
    batch.refresh_from_db()
    assert (batch.is_active, batch.cancelled_at, batch.deleted_at) == (True, None, None)


@pytest.mark.parametrize("tool", ["pause", "resume", "cancel", "delete"])
def test_object_tools__view_only_staff_gets_403(viewer_client, system_actor, tool):
    batch = BatchFactory()
    if tool == "resume":
        services.batch_pause(batch=batch, actor=system_actor)
    url = reverse(f"admin:batches_batch_{tool}", args=[batch.pk])

    response = viewer_client.post(url, {"post": "yes"})

    assert response.status_code == 403
    assert not batch.events.exclude(source=Source.SYSTEM).exists()


def test_delete_batches__needs_the_delete_permission(db):
    user = UserFactory(username="operator", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(codename__in=["view_batch", "change_batch"])
    )
    client = Client()
    client.force_login(user)
    batch = BatchFactory()

    choices = client.get(CHANGELIST).context["action_form"].fields["action"].choices
    denied = run_action(client, "delete_batches", [batch], post="yes")
    allowed = run_action(client, "pause_selected", [batch])

    assert "delete_batches" not in [name for name, _ in choices]
    assert denied.status_code == 403
    assert texts(allowed) == ["1 batch paused"]


# --- the batch page: object tools, audit trail, counts, read-only fields


def test_change_form__object_tools_are_post_forms_with_csrf(admin_client):
    batch = BatchFactory()

    html = admin_client.get(change_url(batch)).content.decode()

    pause = reverse("admin:batches_batch_pause", args=[batch.pk])
    cancel = reverse("admin:batches_batch_cancel", args=[batch.pk])
    assert f'<form method="post" action="{pause}"' in html
    assert f'<form method="post" action="{cancel}"' in html
    assert f'href="{pause}"' not in html
    assert html.count("csrfmiddlewaretoken") >= 3
    # An active batch offers pause, not resume.
    assert reverse("admin:batches_batch_resume", args=[batch.pk]) not in html


def test_change_form__view_only_staff_sees_no_object_tools(viewer_client):
    batch = BatchFactory()
    html = viewer_client.get(change_url(batch)).content.decode()
    assert reverse("admin:batches_batch_pause", args=[batch.pk]) not in html


@pytest.mark.parametrize("tool", ["pause", "resume", "cancel"])
def test_object_tools__get_is_not_allowed(admin_client, tool):
    batch = BatchFactory()
    url = reverse(f"admin:batches_batch_{tool}", args=[batch.pk])
    assert admin_client.get(url).status_code == 405
    batch.refresh_from_db()
    assert batch.is_active is True


def test_object_tools__post_without_csrf_token_is_refused(admin_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    batch = BatchFactory()

    response = client.post(reverse("admin:batches_batch_pause", args=[batch.pk]))

    assert response.status_code == 403
    batch.refresh_from_db()
    assert batch.is_active is True


def test_pause_view__pauses_with_a_reason_and_audits(admin_client, admin_user):
    batch = BatchFactory()

    response = admin_client.post(
        reverse("admin:batches_batch_pause", args=[batch.pk]),
        {"reason": "script under review"},
        follow=True,
    )

    assert response.redirect_chain[-1][0] == change_url(batch)
    assert texts(response) == [f"Batch “{batch.name}” paused."]
    batch.refresh_from_db()
    assert batch.state == Batch.State.PAUSED
    assert batch.pause_reason == "script under review"
    event = audit(batch, BatchEvent.Action.PAUSED)
    assert (event.source, event.actor, event.reason) == (
        Source.ADMIN,
        admin_user,
        "script under review",
    )


def test_resume_view__resumes_and_refuses_cancelled(admin_client, system_actor):
    paused, cancelled = BatchFactory(), BatchFactory()
    services.batch_pause(batch=paused, actor=system_actor)
    services.batch_cancel(batch=cancelled, actor=system_actor)

    ok = admin_client.post(
        reverse("admin:batches_batch_resume", args=[paused.pk]), follow=True
    )
    refused = admin_client.post(
        reverse("admin:batches_batch_resume", args=[cancelled.pk]), follow=True
    )

    assert texts(ok) == [f"Batch “{paused.name}” resumed."]
    assert refused.status_code == 200
    assert "cannot be resumed" in texts(refused)[0]
    paused.refresh_from_db()
    assert paused.is_active is True


def test_cancel_view__confirms_then_cancels(admin_client, admin_user):
    batch = BatchFactory()
    make_jobs(batch, pending=2)
    url = reverse("admin:batches_batch_cancel", args=[batch.pk])

    confirmation = admin_client.post(url)
    assert confirmation.status_code == 200
    assert "Yes, cancel 1 batch and 2 jobs" in confirmation.content.decode()
    batch.refresh_from_db()
    assert batch.cancelled_at is None

    response = admin_client.post(url, {"post": "yes"}, follow=True)
    assert texts(response) == ["1 batch cancelled; 2 jobs cancelled"]
    batch.refresh_from_db()
    assert batch.state == Batch.State.CANCELLED
    event = audit(batch, BatchEvent.Action.CANCELLED)
    assert (event.source, event.actor) == (Source.ADMIN, admin_user)


def test_change_form__shows_audit_trail_and_job_count_links(admin_client, api_actor):
    batch = services.batch_create(
        account=api_actor.user.membership.account, name="Renewals", actor=api_actor
    )
    services.batch_pause(batch=batch, actor=api_actor, reason="wrong script")
    make_jobs(batch, pending=2, failed=1)

    html = admin_client.get(change_url(batch)).content.decode()

    assert "Audit trail" in html
    assert "wrong script" in html
    assert api_actor.user.username in html
    jobs = reverse("admin:jobs_job_changelist")
    assert f'<a href="{jobs}?batch__id__exact={batch.pk}&amp;status=pending">' in html
    assert '<td class="cc-num">2</td>' in html


def test_change_form__worker_and_service_fields_are_read_only(admin_client):
    batch = BatchFactory()
    form = admin_client.get(change_url(batch)).context["adminform"].form
    assert set(form.fields) == {
        "name",
        "description",
        "priority",
        "voice",
        "is_active",
        "max_concurrent_calls",
        "breaker",
    }


def test_change_form__cancelled_batch_cannot_be_reactivated(admin_client, system_actor):
    batch = BatchFactory()
    services.batch_cancel(batch=batch, actor=system_actor)
    form = admin_client.get(change_url(batch)).context["adminform"].form
    assert "is_active" not in form.fields


def test_change_form__unchecking_is_active_pauses_through_the_service(
    admin_client, admin_user
):
    batch = BatchFactory(name="Renewals", priority=1)

    response = admin_client.post(
        change_url(batch),
        {
            "name": "Renewals",
            "description": batch.description,
            "priority": "1",
            # is_active unchecked
            "events-TOTAL_FORMS": "0",
            "events-INITIAL_FORMS": "0",
        },
    )

    assert response.status_code == 302
    batch.refresh_from_db()
    assert batch.state == Batch.State.PAUSED
    assert batch.pause_source == Source.ADMIN
    assert batch.paused_by == admin_user
    event = audit(batch, BatchEvent.Action.PAUSED)
    assert (event.source, event.actor) == (Source.ADMIN, admin_user)
    assert event.changes == {"is_active": [True, False]}


def test_change_form__editing_name_and_priority_is_audited(admin_client, admin_user):
    batch = BatchFactory(name="Renewals", priority=1)

    admin_client.post(
        change_url(batch),
        {
            "name": "Renewals Q4",
            "description": batch.description,
            "priority": "7",
            "is_active": "on",
            "events-TOTAL_FORMS": "0",
            "events-INITIAL_FORMS": "0",
        },
    )

    event = audit(batch, BatchEvent.Action.UPDATED)
    assert event.changes == {"name": ["Renewals", "Renewals Q4"], "priority": [1, 7]}
    assert (event.source, event.actor) == (Source.ADMIN, admin_user)


def test_change_form__caps_and_breaker_are_set_through_the_service(admin_client):
    batch = BatchFactory(name="Renewals", priority=1)

    response = admin_client.post(
        change_url(batch),
        {
            "name": "Renewals",
            "description": batch.description,
            "priority": "1",
            "is_active": "on",
            "max_concurrent_calls": "4",
            "breaker": '{"window": 10, "max_failure_ratio": 0.3}',
            "events-TOTAL_FORMS": "0",
            "events-INITIAL_FORMS": "0",
        },
    )

    assert response.status_code == 302
    batch.refresh_from_db()
    assert batch.max_concurrent_calls == 4
    assert batch.breaker == {"window": 10, "max_failure_ratio": 0.3}
    assert audit(batch, BatchEvent.Action.UPDATED).changes["max_concurrent_calls"] == [
        None,
        4,
    ]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_concurrent_calls", "-1"),
        ("breaker", '{"window": 0, "max_failure_ratio": 0.3}'),
        ("breaker", '{"window": 5, "max_failure_ratio": 3}'),
    ],
)
def test_change_form__a_bad_cap_is_a_form_error_and_changes_nothing(
    admin_client, field, value
):
    batch = BatchFactory(name="Renewals", priority=1)
    data = {
        "name": "Renamed",
        "description": batch.description,
        "priority": "1",
        "is_active": "on",
        "events-TOTAL_FORMS": "0",
        "events-INITIAL_FORMS": "0",
        field: value,
    }

    response = admin_client.post(change_url(batch), data)

    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    batch.refresh_from_db()
    assert (batch.name, batch.max_concurrent_calls, batch.breaker) == (
        "Renewals",
        None,
        None,
    )


def test_add_batch__goes_through_batch_create(admin_client, admin_user, account):
    response = admin_client.post(
        reverse("admin:batches_batch_add"),
        {
            "account": account.pk,
            "name": "New campaign",
            "description": "",
            "priority": "3",
            "is_active": "on",
        },
    )

    assert response.status_code == 302
    batch = Batch.objects.get(name="New campaign")
    assert batch.batch_id.startswith("batch-")
    event = audit(batch, BatchEvent.Action.CREATED)
    assert (event.source, event.actor) == (Source.ADMIN, admin_user)


def test_batch_event_admin__is_read_only(admin_client, api_actor):
    batch = BatchFactory()
    services.batch_pause(batch=batch, actor=api_actor)
    event = batch.events.get()

    listing = admin_client.get(reverse("admin:batches_batchevent_changelist"))
    detail = admin_client.get(
        reverse("admin:batches_batchevent_change", args=[event.pk])
    )
    add = admin_client.get(reverse("admin:batches_batchevent_add"))

    assert listing.status_code == 200
    assert batch.batch_id in listing.content.decode()
    assert detail.status_code == 200
    assert detail.context["has_change_permission"] is False
    assert add.status_code == 403
