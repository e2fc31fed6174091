from __future__ import annotations

import io
from datetime import timedelta

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from batches import services
from batches.management.commands.cancel_inactive_batch_jobs import parse_duration
from batches.models import BatchEvent
from batches.tests.factories import BatchFactory
from callcenter.actor import Actor, Source
from jobs.models import Job, JobStatus

pytestmark = pytest.mark.django_db


def bulk_jobs(batch, n: int, status: str = JobStatus.PENDING, start: int = 0) -> None:
    """Insert n jobs with one INSERT … SELECT generate_series (fast enough for
    hundreds of thousands of rows)."""
    scheduled = "now() + interval '1 day'" if status == JobStatus.SCHEDULED else "NULL"
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO jobs_job (
                account_id, batch_id, phone_number, variables, status, priority,
                scheduled_at, attempts, max_attempts, claimed_by, call_id,
                attempt_log, last_error, cancel_reason, created_at, updated_at)
            SELECT %s, %s, '+1' || lpad((2000000000 + g)::text, 10, '0'), '{{}}',
                   %s, 0, {scheduled}, 0, 3, '', '', '[]', '', '', now(), now()
            FROM generate_series(%s, %s) AS g
            """,
            [batch.account_id, batch.pk, status, start + 1, start + n],
        )


def run(*args, **kwargs):
    out, err = io.StringIO(), io.StringIO()
    call_command("cancel_inactive_batch_jobs", *args, stdout=out, stderr=err, **kwargs)
    return out.getvalue(), err.getvalue()


def statuses(batch):
    return dict(
        Job.objects.filter(batch=batch)
        .order_by()
        .values_list("status")
        .annotate(n=Count("id"))
    )


@pytest.fixture
def admin_actor(staff_user):
    return Actor(source=Source.ADMIN, user=staff_user)


def paused_batch(actor, **kwargs):
    batch = BatchFactory(**kwargs)
    services.batch_pause(batch=batch, actor=actor, reason="wrong script")
    return batch


def test_parse_duration__accepts_units_and_combinations():
    assert parse_duration("30m") == timedelta(minutes=30)
    assert parse_duration("2h") == timedelta(hours=2)
    assert parse_duration("7d") == timedelta(days=7)
    assert parse_duration("1h30m") == timedelta(minutes=90)


@pytest.mark.parametrize("bad", ["", "abc", "10", "5y", "-3h", "0m", "2h x"])
def test_parse_duration__rejects_bad_values(bad):
    with pytest.raises(CommandError):
        parse_duration(bad)


def test_command__bad_paused_for_is_a_command_error():
    with pytest.raises(CommandError, match="not a duration"):
        run("--paused-for", "soon", "--yes")


def test_command__dry_run_prints_counts_and_changes_nothing(admin_actor):
    paused = paused_batch(admin_actor)
    bulk_jobs(paused, 5)
    bulk_jobs(paused, 2, JobStatus.SCHEDULED, start=100)
    bulk_jobs(paused, 1, JobStatus.IN_PROGRESS, start=200)
    active = BatchFactory()
    bulk_jobs(active, 3)

    out, _ = run("--dry-run")

    assert paused.batch_id in out
    assert "7 jobs" in out
    assert active.batch_id not in out
    assert "would cancel 7 jobs in 1 batch" in out
    assert statuses(paused) == {"pending": 5, "scheduled": 2, "in_progress": 1}
    assert not BatchEvent.objects.filter(action=BatchEvent.Action.JOBS_CANCELLED)


def test_command__cancels_pending_and_scheduled_keeps_in_progress_and_suspended(
    admin_actor,
):
    paused = paused_batch(admin_actor)
    bulk_jobs(paused, 4)
    bulk_jobs(paused, 2, JobStatus.SCHEDULED, start=100)
    bulk_jobs(paused, 1, JobStatus.IN_PROGRESS, start=200)
    bulk_jobs(paused, 3, JobStatus.SUSPENDED, start=300)
    bulk_jobs(paused, 1, JobStatus.COMPLETED, start=400)
    active = BatchFactory()
    bulk_jobs(active, 3)

    out, _ = run("--yes", "--reason", "Campaign abandoned")

    assert statuses(paused) == {
        "cancelled": 6,
        "in_progress": 1,
        "suspended": 3,
        "completed": 1,
    }
    assert set(
        Job.objects.filter(batch=paused, status="cancelled").values_list(
            "cancel_reason", flat=True
        )
    ) == {"Campaign abandoned"}
    assert statuses(active) == {"pending": 3}
    event = paused.events.get(action=BatchEvent.Action.JOBS_CANCELLED)
    assert event.source == Source.COMMAND
    assert event.actor_label == "cancel_inactive_batch_jobs"
    assert event.changes["jobs_cancelled"] == 6
    assert event.reason == "Campaign abandoned"
    assert "Cancelled 6 jobs in 1 batch(es)" in out


def test_command__deleted_and_cancelled_batches_lose_suspended_jobs_too(
    admin_actor,
):
    deleted = BatchFactory()
    bulk_jobs(deleted, 2, JobStatus.SUSPENDED)
    # A delete whose sweep was interrupted: the batch is gone, its jobs not.
    deleted.is_active = False
    deleted.deleted_at = timezone.now()
    deleted.save(update_fields=["is_active", "deleted_at"])

    run("--yes")

    assert statuses(deleted) == {"cancelled": 2}


def test_command__batch_filter_is_repeatable_and_warns_about_unknown(admin_actor):
    a, b, c = (paused_batch(admin_actor) for _ in range(3))
    for i, batch in enumerate((a, b, c)):
        bulk_jobs(batch, 2, start=i * 10)

    _, err = run(
        "--yes", "--batch", a.batch_id, "--batch", c.batch_id, "--batch", "nope"
    )

    assert statuses(a) == {"cancelled": 2}
    assert statuses(b) == {"pending": 2}
    assert statuses(c) == {"cancelled": 2}
    assert "nope" in err


def test_command__paused_for_only_takes_batches_paused_long_enough(admin_actor):
    with time_machine.travel(timezone.now() - timedelta(hours=3), tick=False):
        old = paused_batch(admin_actor)
    recent = paused_batch(admin_actor)
    bulk_jobs(old, 2)
    bulk_jobs(recent, 2, start=10)

    run("--yes", "--paused-for", "2h")

    assert statuses(old) == {"cancelled": 2}
    assert statuses(recent) == {"pending": 2}


def test_command__is_idempotent(admin_actor):
    paused = paused_batch(admin_actor)
    bulk_jobs(paused, 3)

    run("--yes")
    out, _ = run("--yes")

    assert statuses(paused) == {"cancelled": 3}
    assert "Nothing to cancel" in out
    assert paused.events.filter(action=BatchEvent.Action.JOBS_CANCELLED).count() == 1


def test_command__refuses_without_yes_when_stdin_is_not_a_tty(admin_actor):
    paused = paused_batch(admin_actor)
    bulk_jobs(paused, 1)
    with pytest.raises(CommandError, match="--yes"):
        run()
    assert statuses(paused) == {"pending": 1}


def test_command__prompts_at_a_terminal(admin_actor, monkeypatch):
    from batches.management.commands import cancel_inactive_batch_jobs as cmd

    paused = paused_batch(admin_actor)
    bulk_jobs(paused, 1)
    monkeypatch.setattr(cmd.Command, "stdin_isatty", lambda self: True)
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    with pytest.raises(CommandError, match="Aborted"):
        run()
    assert statuses(paused) == {"pending": 1}

    monkeypatch.setattr("builtins.input", lambda prompt: "y")
    run()
    assert statuses(paused) == {"cancelled": 1}


def test_batch_cancel_inactive_jobs__leaves_an_active_batch_alone():
    batch = BatchFactory()
    bulk_jobs(batch, 2)
    assert (
        services.batch_cancel_inactive_jobs(batch=batch, actor=Actor.command("t")) == 0
    )
    assert statuses(batch) == {"pending": 2}


def test_batch_cancel_inactive_jobs__stops_when_the_batch_is_resumed_mid_sweep(
    admin_actor,
):
    batch = paused_batch(admin_actor)
    bulk_jobs(batch, 10)

    def resume_after_first_chunk(done):
        if done == 3:
            services.batch_resume(batch=batch, actor=admin_actor)

    cancelled = services.batch_cancel_inactive_jobs(
        batch=batch,
        actor=Actor.command("t"),
        chunk_size=3,
        progress=resume_after_first_chunk,
    )
    assert cancelled == 3
    assert statuses(batch) == {"cancelled": 3, "pending": 7}


@pytest.mark.slow
def test_command__cancels_200k_jobs_in_chunks_with_progress(admin_actor):
    big = paused_batch(admin_actor)
    bulk_jobs(big, 150_000)
    other = paused_batch(admin_actor)
    bulk_jobs(other, 50_000, JobStatus.SCHEDULED, start=500_000)
    active = BatchFactory()
    bulk_jobs(active, 1000, start=900_000)

    out, _ = run("--dry-run")
    assert "would cancel 200,000 jobs in 2 batch(es)" in out
    assert Job.objects.filter(status=JobStatus.CANCELLED).count() == 0

    out, err = run("--yes", "--chunk-size", "20000")

    assert "Cancelled 200,000 jobs in 2 batch(es)" in out
    assert "progress: 200,000/200,000 jobs 100%" in err
    assert Job.objects.filter(status=JobStatus.CANCELLED).count() == 200_000
    assert statuses(active) == {"pending": 1000}

    out, _ = run("--yes")
    assert "Nothing to cancel" in out


def test_progress_bar__redraws_one_line_at_a_terminal():
    from django.core.management.base import OutputWrapper

    from batches.management.commands.cancel_inactive_batch_jobs import ProgressBar

    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    bar = ProgressBar(OutputWrapper(stream), total=200, width=10)
    bar.update(50)
    bar.update(200)
    bar.finish()
    text = stream.getvalue()
    assert "\r[##........] 50/200 jobs  25%" in text
    assert "\r[##########] 200/200 jobs 100%" in text
    assert text.endswith("\n")
