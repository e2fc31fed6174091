from __future__ import annotations

from django.apps import AppConfig


class BatchesConfig(AppConfig):
    name = "batches"
    verbose_name = "Batches"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from batches.receivers import (
            complete_batch_on_job_finished,
            complete_batch_on_resume,
        )
        from batches.signals import batch_transitioned
        from callcenter.schedules import ensure_schedules
        from jobs.signals import job_finished

        post_migrate.connect(
            ensure_schedules, sender=self, dispatch_uid="callcenter.schedules"
        )
        job_finished.connect(
            complete_batch_on_job_finished, dispatch_uid="batches.complete_on_finish"
        )
        batch_transitioned.connect(
            complete_batch_on_resume, dispatch_uid="batches.complete_on_resume"
        )
