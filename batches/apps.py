from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class BatchesConfig(AppConfig):
    name = "batches"
    verbose_name = _("Batches")

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from accounts import signals as accounts_signals
        from batches import receivers
        from batches.receivers import (
            complete_batch_on_resume,
            complete_batches_on_jobs_finished,
            pause_batch_on_breaker_tripped,
            reopen_batch_on_new_work,
        )
        from batches.signals import batch_transitioned
        from callcenter.schedules import ensure_schedules
        from jobs.signals import batch_got_work, breaker_tripped, jobs_finished

        post_migrate.connect(
            ensure_schedules, sender=self, dispatch_uid="callcenter.schedules"
        )
        jobs_finished.connect(
            complete_batches_on_jobs_finished, dispatch_uid="batches.complete_on_finish"
        )
        batch_transitioned.connect(
            complete_batch_on_resume, dispatch_uid="batches.complete_on_resume"
        )
        batch_got_work.connect(
            reopen_batch_on_new_work, dispatch_uid="batches.reopen_on_new_work"
        )
        accounts_signals.credits_ran_out.connect(
            receivers.pause_batches_on_credits_ran_out,
            dispatch_uid="batches.pause_on_credits_ran_out",
        )
        accounts_signals.credits_available.connect(
            receivers.resume_batches_on_credits_available,
            dispatch_uid="batches.resume_on_credits_available",
        )
        accounts_signals.credits_held_accounts.connect(
            receivers.accounts_with_paused_batches,
            dispatch_uid="batches.credits_held_accounts",
        )
        breaker_tripped.connect(
            pause_batch_on_breaker_tripped, dispatch_uid="batches.breaker_pause"
        )
