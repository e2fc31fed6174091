from django.db import migrations, models
from django.db.models import Q


def mark_staff_pauses(apps, schema_editor):
    """Pauses made before the flag existed: from the admin, or by a staff
    user anywhere, are staff pauses."""
    Batch = apps.get_model("batches", "Batch")
    Batch._base_manager.filter(is_active=False, cancelled_at__isnull=True).filter(
        Q(pause_source="admin") | Q(paused_by__is_staff=True)
    ).update(paused_by_staff=True)


class Migration(migrations.Migration):

    dependencies = [
        ("batches", "0003_pause_state_and_audit"),
    ]

    operations = [
        # db_default: rows inserted by raw SQL (bench data) get False too.
        migrations.AddField(
            model_name="batch",
            name="paused_by_staff",
            field=models.BooleanField(db_default=False, default=False),
        ),
        # The reverse drops the column with the field; nothing to undo here.
        migrations.RunPython(mark_staff_pauses, migrations.RunPython.noop),
    ]
