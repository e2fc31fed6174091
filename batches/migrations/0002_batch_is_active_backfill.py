"""Add Batch.is_active and backfill it.

This stands in for the original system's scripts/update_batches_is_active.py:
existing batches become active, except cancelled ones. The column is added
nullable, filled, then made NOT NULL, so the backfill really decides each row.
"""

from django.db import migrations, models


def backfill_is_active(apps, schema_editor):
    Batch = apps.get_model("batches", "Batch")
    Batch._base_manager.filter(cancelled_at__isnull=True).update(is_active=True)
    Batch._base_manager.filter(cancelled_at__isnull=False).update(is_active=False)


def clear_is_active(apps, schema_editor):
    Batch = apps.get_model("batches", "Batch")
    Batch._base_manager.update(is_active=None)


class Migration(migrations.Migration):

    dependencies = [
        ("batches", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="batch",
            name="is_active",
            field=models.BooleanField(null=True),
        ),
        migrations.RunPython(backfill_is_active, clear_is_active),
        migrations.AlterField(
            model_name="batch",
            name="is_active",
            field=models.BooleanField(default=True),
        ),
        migrations.AddIndex(
            model_name="batch",
            index=models.Index(fields=["is_active", "batch_id"], name="batch_active_id_idx"),
        ),
        migrations.AddConstraint(
            model_name="batch",
            constraint=models.CheckConstraint(
                condition=models.Q(("cancelled_at__isnull", True), ("is_active", False), _connector="OR"),
                name="batch_cancelled_is_inactive",
            ),
        ),
    ]
