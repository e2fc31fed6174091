from __future__ import annotations

import pytest

from batches import services
from batches.models import Batch, BatchEvent
from batches.tests.factories import BatchFactory
from callcenter.actor import Actor, Source
from callcenter.exceptions import (
    BatchCancelledError,
    BatchDeletedError,
    BatchPausedByStaffError,
)
from jobs.models import Job, JobStatus
from jobs.tests.factories import JobFactory

pytestmark = pytest.mark.django_db


def make_jobs(batch, **statuses):
    for status, n in statuses.items():
        for _ in range(n):
            extra = {}
            if status == JobStatus.SCHEDULED:
                from django.utils import timezone

                extra["scheduled_at"] = timezone.now()
            JobFactory(batch=batch, status=status, **extra)


def test_batch_create__generates_original_style_id_and_audits(account, api_actor):
    batch = services.batch_create(account=account, name="Renewals", actor=api_actor)
    assert batch.batch_id.startswith("batch-")
    # batch-2025-10-25-144129-862530
    parts = batch.batch_id.split("-")
    assert len(parts) == 6
    assert [len(p) for p in parts[1:]] == [4, 2, 2, 6, 6]
    event = BatchEvent.objects.get(batch=batch)
    assert event.action == BatchEvent.Action.CREATED
    assert event.actor == api_actor.user


def test_batch_pause__sets_inactive_and_records_who_and_why(api_actor):
    batch = BatchFactory()
    before = batch.updated_at
    assert services.batch_pause(batch=batch, actor=api_actor, reason="wrong script")
    batch.refresh_from_db()
    assert batch.is_active is False
    assert batch.updated_at > before
    assert batch.paused_by == api_actor.user
    assert batch.pause_source == Source.API
    assert batch.pause_reason == "wrong script"
    event = batch.events.get(action=BatchEvent.Action.PAUSED)
    assert event.source == Source.API
    assert event.actor == api_actor.user
    assert event.remote_addr == "127.0.0.1"
    assert event.changes == {"is_active": [True, False]}


def test_batch_pause__is_idempotent(api_actor):
    batch = BatchFactory()
    assert services.batch_pause(batch=batch, actor=api_actor) is True
    assert services.batch_pause(batch=batch, actor=api_actor) is False
    assert batch.events.filter(action=BatchEvent.Action.PAUSED).count() == 1


def test_batch_pause__leaves_jobs_untouched(api_actor):
    batch = BatchFactory()
    make_jobs(batch, pending=3, scheduled=2, in_progress=1)
    services.batch_pause(batch=batch, actor=api_actor)
    statuses = sorted(Job.objects.filter(batch=batch).values_list("status", flat=True))
    assert statuses == [
        "in_progress",
        "pending",
        "pending",
        "pending",
        "scheduled",
        "scheduled",
    ]


def test_batch_resume__reactivates_and_clears_pause_reason(api_actor):
    batch = BatchFactory()
    services.batch_pause(batch=batch, actor=api_actor, reason="x")
    assert services.batch_resume(batch=batch, actor=api_actor) is True
    batch.refresh_from_db()
    assert batch.is_active is True
    assert batch.pause_reason == ""
    assert batch.paused_by is None
    assert services.batch_resume(batch=batch, actor=api_actor) is False
    assert batch.events.filter(action=BatchEvent.Action.RESUMED).count() == 1


def test_batch_resume__refused_for_cancelled_batch(api_actor):
    batch = BatchFactory()
    services.batch_cancel(batch=batch, actor=api_actor)
    with pytest.raises(BatchCancelledError):
        services.batch_resume(batch=batch, actor=api_actor)
    with pytest.raises(BatchCancelledError):
        services.batch_update(batch=batch, actor=api_actor, is_active=True)
    batch.refresh_from_db()
    assert batch.is_active is False


def test_batch_update__returns_only_really_changed_fields(api_actor):
    batch = BatchFactory(name="Old", priority=1)
    changed = services.batch_update(
        batch=batch, actor=api_actor, name="New", priority=1, is_active=False
    )
    assert sorted(changed) == ["is_active", "name"]
    batch.refresh_from_db()
    assert (batch.name, batch.priority, batch.is_active) == ("New", 1, False)
    event = batch.events.get(action=BatchEvent.Action.PAUSED)
    assert event.changes == {"name": ["Old", "New"], "is_active": [True, False]}


def test_batch_update__no_change_writes_nothing(api_actor):
    batch = BatchFactory(name="Same")
    updated_at = batch.updated_at
    assert services.batch_update(batch=batch, actor=api_actor, name="Same") == []
    batch.refresh_from_db()
    assert batch.updated_at == updated_at
    assert not batch.events.exists()


def test_batch_update__plain_field_change_is_audited_as_update(api_actor):
    batch = BatchFactory(priority=0)
    assert services.batch_update(batch=batch, actor=api_actor, priority=7) == [
        "priority"
    ]
    event = batch.events.get()
    assert event.action == BatchEvent.Action.UPDATED
    assert event.changes == {"priority": [0, 7]}


def test_batch_update__rejects_unknown_fields(api_actor):
    batch = BatchFactory()
    with pytest.raises(TypeError):
        services.batch_update(batch=batch, actor=api_actor, status="x")


def test_batch_cancel__cancels_every_non_terminal_job(api_actor):
    batch = BatchFactory()
    make_jobs(
        batch,
        pending=3,
        scheduled=1,
        in_progress=1,
        suspended=1,
        completed=1,
        done=1,
        failed=1,
    )
    assert services.batch_cancel(batch=batch, actor=api_actor) == 6
    batch.refresh_from_db()
    assert batch.is_active is False
    assert batch.cancelled_at is not None
    cancelled = Job.objects.filter(batch=batch, status=JobStatus.CANCELLED)
    assert cancelled.count() == 6
    assert set(cancelled.values_list("cancel_reason", flat=True)) == {"Batch cancelled"}
    assert (
        Job.objects.filter(
            batch=batch, status__in=["completed", "done", "failed"]
        ).count()
        == 3
    )
    actions = set(batch.events.values_list("action", flat=True))
    assert {"cancelled", "jobs_cancelled"} <= actions


def test_batch_cancel__sweeps_in_chunks_and_reports_progress(api_actor, settings):
    settings.JOB_SWEEP_CHUNK_SIZE = 2
    batch = BatchFactory()
    make_jobs(batch, pending=5)
    seen: list[int] = []
    assert (
        services.batch_cancel(batch=batch, actor=api_actor, progress=seen.append) == 5
    )
    assert seen == [2, 4, 5]


def test_batch_cancel__again_is_idempotent(api_actor):
    batch = BatchFactory()
    make_jobs(batch, pending=2)
    services.batch_cancel(batch=batch, actor=api_actor)
    assert services.batch_cancel(batch=batch, actor=api_actor) == 0
    assert batch.events.filter(action="cancelled").count() == 1


def test_batch_delete__hides_batch_and_cancels_open_jobs_keeping_history(api_actor):
    batch = BatchFactory()
    make_jobs(
        batch, pending=2, scheduled=1, in_progress=1, completed=1, done=1, failed=1
    )
    result = services.batch_delete(batch=batch, actor=api_actor)
    assert result == services.DeleteResult(cancelled_jobs=4, deleted_jobs=0)
    assert not Batch.objects.filter(pk=batch.pk).exists()
    assert Batch.all_objects.filter(pk=batch.pk).exists()
    jobs = Job.objects.filter(batch__batch_id=batch.batch_id)
    assert jobs.count() == 7
    assert set(
        jobs.filter(status="cancelled").values_list("cancel_reason", flat=True)
    ) == {"Batch deleted"}
    assert jobs.filter(status__in=["completed", "done", "failed"]).count() == 3
    event = BatchEvent.objects.get(batch_public_id=batch.batch_id, action="deleted")
    assert event.changes["delete_jobs"] is False


def test_batch_delete__with_delete_jobs_removes_all_jobs(api_actor):
    batch = BatchFactory()
    make_jobs(batch, pending=2, completed=2)
    result = services.batch_delete(batch=batch, actor=api_actor, delete_jobs=True)
    assert result.deleted_jobs == 4
    assert not Job.objects.filter(batch_id=batch.pk).exists()
    # The audit trail outlives the jobs and the batch.
    assert BatchEvent.objects.filter(
        batch_public_id=batch.batch_id, action="deleted"
    ).exists()


def test_batch_delete__deleted_batch_refuses_further_transitions(api_actor):
    batch = BatchFactory()
    services.batch_delete(batch=batch, actor=api_actor)
    for call in (services.batch_pause, services.batch_resume, services.batch_cancel):
        with pytest.raises(BatchDeletedError):
            call(batch=batch, actor=api_actor)


def test_audit__survives_hard_delete_of_batch_row(api_actor):
    batch = BatchFactory()
    services.batch_pause(batch=batch, actor=api_actor)
    public_id = batch.batch_id
    Batch.all_objects.filter(pk=batch.pk).delete()
    event = BatchEvent.objects.get(batch_public_id=public_id, action="paused")
    assert event.batch is None
    assert event.actor == api_actor.user


def test_batch_cancel_jobs__portable_path_matches_postgres_path(settings):
    # The ORM path serves SQLite (`make run`); it must cancel the same jobs.
    settings.JOB_SWEEP_CHUNK_SIZE = 2
    batch = BatchFactory()
    make_jobs(batch, pending=3, scheduled=2, completed=1)
    chunks = list(
        services._cancel_chunks_orm(batch, ["pending", "scheduled"], 2, "why")
    )
    assert sum(chunks) == 5
    assert Job.objects.filter(batch=batch, status="cancelled").count() == 5
    assert Job.objects.filter(batch=batch, status="completed").count() == 1


# --- A staff pause ------------------------------------------------------------------


@pytest.fixture
def staff_actor(staff_user):
    return Actor(source=Source.ADMIN, user=staff_user, remote_addr="10.0.0.1")


def test_batch_pause__records_whether_staff_paused(api_actor, staff_actor):
    by_member, by_staff = BatchFactory(), BatchFactory()
    services.batch_pause(batch=by_member, actor=api_actor)
    services.batch_pause(batch=by_staff, actor=staff_actor, reason="wrong script")
    by_member.refresh_from_db()
    by_staff.refresh_from_db()
    assert (by_member.paused_by_staff, by_staff.paused_by_staff) == (False, True)
    assert by_staff.paused_by == staff_actor.user
    event = by_staff.events.get(action=BatchEvent.Action.PAUSED)
    assert (event.source, event.actor) == (Source.ADMIN, staff_actor.user)


def test_batch_resume__a_member_cannot_lift_a_staff_pause(api_actor, staff_actor):
    batch = BatchFactory(account=api_actor.user.membership.account)
    services.batch_pause(batch=batch, actor=staff_actor, reason="wrong script")

    with pytest.raises(BatchPausedByStaffError, match="paused by staff"):
        services.batch_resume(batch=batch, actor=api_actor)
    with pytest.raises(BatchPausedByStaffError):
        services.batch_update(batch=batch, actor=api_actor, is_active=True)
    batch.refresh_from_db()
    assert batch.is_active is False
    assert not batch.events.filter(action=BatchEvent.Action.RESUMED).exists()

    assert services.batch_resume(batch=batch, actor=staff_actor) is True
    batch.refresh_from_db()
    assert (batch.is_active, batch.paused_by_staff) == (True, False)


def test_batch_resume__an_operator_command_may_lift_a_staff_pause(staff_actor):
    batch = BatchFactory()
    services.batch_pause(batch=batch, actor=staff_actor)
    assert services.batch_resume(batch=batch, actor=Actor.command("ops")) is True


def test_batch_pause__staff_takes_over_a_member_pause(api_actor, staff_actor):
    batch = BatchFactory()
    services.batch_pause(batch=batch, actor=api_actor, reason="lunch")
    batch.refresh_from_db()
    paused_at = batch.paused_at

    assert services.batch_pause(batch=batch, actor=staff_actor, reason="stop") is True
    batch.refresh_from_db()
    assert batch.paused_by_staff is True
    assert (batch.paused_by, batch.pause_source) == (staff_actor.user, Source.ADMIN)
    assert batch.pause_reason == "stop"
    assert batch.paused_at == paused_at  # paused since the member's pause
    event = batch.events.filter(action=BatchEvent.Action.PAUSED).first()
    assert event.changes == {"paused_by_staff": [False, True]}
    with pytest.raises(BatchPausedByStaffError):
        services.batch_resume(batch=batch, actor=api_actor)
    # A second staff pause changes nothing.
    assert services.batch_pause(batch=batch, actor=staff_actor) is False
