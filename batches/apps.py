from __future__ import annotations

from django.apps import AppConfig


class BatchesConfig(AppConfig):
    name = "batches"
    verbose_name = "Batches"

    def ready(self) -> None:
        from batches.receivers import complete_batch_on_job_finished
        from jobs.signals import job_finished

        job_finished.connect(
            complete_batch_on_job_finished, dispatch_uid="batches.complete_on_finish"
        )
