"""Delete call records past their retention (CALL_RECORD_RETENTION_DAYS).

Call records are the history of calls whose jobs were deleted; this command
is the only way they go. It is an operator's tool, run by hand or from cron
on a host with the app's settings, and it asks before deleting unless --yes
is given.
"""

from __future__ import annotations

import sys
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError, CommandParser
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from callcenter.commands import TranslatedCommand
from jobs.history import call_records_expired, call_records_purge


class Command(TranslatedCommand):
    help = gettext_lazy(
        "Delete the call records of deleted jobs whose last call is older than "
        "CALL_RECORD_RETENTION_DAYS."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help=_("Print how many records would be deleted; change nothing."),
        )
        parser.add_argument(
            "--yes",
            action="store_true",
            help=_(
                "Do not ask for confirmation. Required when stdin is not a terminal."
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        days = settings.CALL_RECORD_RETENTION_DAYS
        expired = call_records_expired(older_than_days=days)
        if options["dry_run"] or not expired:
            if options["dry_run"]:
                text = _(
                    "%(count)s call record(s) older than %(days)s days would be "
                    "deleted."
                )
            else:
                text = _(
                    "%(count)s call record(s) older than %(days)s days; nothing to do."
                )
            self.stdout.write(text % {"count": expired, "days": days})
            return
        if not options["yes"]:
            if not self.stdin_isatty():
                raise CommandError(
                    _(
                        "stdin is not a terminal: pass --yes to delete without a "
                        "prompt (or --dry-run to preview)"
                    )
                )
            answer = input(
                _("Delete %(count)s call record(s) older than %(days)s days? [y/N] ")
                % {"count": expired, "days": days}
            )
            if answer.strip().lower() not in {"y", "yes"}:
                raise CommandError(_("Aborted; nothing was deleted."))
        deleted = call_records_purge(older_than_days=days)
        self.stdout.write(
            _("Deleted %(count)s call record(s) older than %(days)s days.")
            % {"count": deleted, "days": days}
        )

    def stdin_isatty(self) -> bool:
        return sys.stdin.isatty()
