from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = _("Webhooks")

    def ready(self) -> None:
        from batches.signals import batch_transitioned
        from jobs.signals import jobs_finished
        from webhooks import receivers

        batch_transitioned.connect(
            receivers.on_batch_transitioned, dispatch_uid="webhooks.batch"
        )
        jobs_finished.connect(receivers.on_jobs_finished, dispatch_uid="webhooks.job")
