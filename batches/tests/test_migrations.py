from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("batches", "0001_initial"), ("jobs", "0001_initial")]
AFTER_BACKFILL = [("batches", "0002_batch_is_active_backfill")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def test_is_active_migration__backfills_forward_and_reverses():
    old_apps = migrate(BEFORE)
    Account = old_apps.get_model("accounts", "Account")
    Batch = old_apps.get_model("batches", "Batch")
    assert "is_active" not in {f.name for f in Batch._meta.get_fields()}
    account = Account.objects.create(name="Legacy", slug="legacy")
    Batch.objects.create(account=account, name="running", batch_id="batch-a")
    Batch.objects.create(account=account, name="older", batch_id="batch-b")
    from django.utils import timezone

    Batch.objects.create(
        account=account,
        name="cancelled",
        batch_id="batch-c",
        cancelled_at=timezone.now(),
    )

    new_apps = migrate(AFTER_BACKFILL)
    Batch = new_apps.get_model("batches", "Batch")
    flags = dict(Batch._base_manager.values_list("batch_id", "is_active"))
    assert flags == {"batch-a": True, "batch-b": True, "batch-c": False}

    old_apps = migrate(BEFORE)
    Batch = old_apps.get_model("batches", "Batch")
    assert Batch.objects.count() == 3
    with connection.cursor() as cursor:
        columns = [
            c.name
            for c in connection.introspection.get_table_description(
                cursor, "batches_batch"
            )
        ]
    assert "is_active" not in columns

    # Leave the database fully migrated for the tests that follow.
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def test_paused_by_staff_migration__marks_earlier_staff_pauses():
    old_apps = migrate([("batches", "0003_pause_state_and_audit")])
    Account = old_apps.get_model("accounts", "Account")
    Batch = old_apps.get_model("batches", "Batch")
    User = old_apps.get_model("auth", "User")
    account = Account.objects.create(name="Legacy", slug="legacy-pauses")
    staff = User.objects.create(username="sup", is_staff=True)
    member = User.objects.create(username="crm")
    from django.utils import timezone

    paused = {"is_active": False, "paused_at": timezone.now()}
    rows = {
        "admin": {**paused, "pause_source": "admin", "paused_by": staff},
        "staff-api": {**paused, "pause_source": "api", "paused_by": staff},
        "member": {**paused, "pause_source": "api", "paused_by": member},
        "credits": {**paused, "pause_source": "system"},
        "running": {},
    }
    for name, fields in rows.items():
        Batch.objects.create(account=account, name=name, batch_id=name, **fields)

    new_apps = migrate([("batches", "0004_paused_by_staff")])
    Batch = new_apps.get_model("batches", "Batch")
    flags = dict(Batch._base_manager.values_list("batch_id", "paused_by_staff"))
    assert flags == {
        "admin": True,
        "staff-api": True,
        "member": False,
        "credits": False,
        "running": False,
    }

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
