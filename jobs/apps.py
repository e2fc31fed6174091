from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = _("Jobs")

    def ready(self) -> None:
        from accounts import signals as accounts_signals
        from jobs import receivers

        accounts_signals.credits_ran_out_committed.connect(
            receivers.suspend_jobs_on_credits_ran_out,
            dispatch_uid="jobs.suspend_on_credits_ran_out",
        )
        accounts_signals.credits_available_committed.connect(
            receivers.restore_jobs_on_credits_available,
            dispatch_uid="jobs.restore_on_credits_available",
        )
        accounts_signals.credits_held_accounts.connect(
            receivers.accounts_with_held_jobs,
            dispatch_uid="jobs.credits_held_accounts",
        )
