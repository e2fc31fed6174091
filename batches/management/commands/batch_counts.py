"""Compare the kept per-batch job counts with COUNT(*), and repair drift.

    manage.py batch_counts --check            # report drift; exit 1 if any
    manage.py batch_counts --repair           # report and correct it
    manage.py batch_counts --check --batch batch-2025-...   # one batch

Both read every job of the batches checked (all by default); the periodic
task ``batches.tasks.verify_job_counts`` runs ``--repair`` on a schedule.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from batches.job_counts import (
    Drift,
    counts_are_kept,
    job_count_drift,
    job_counts_repair,
)
from batches.models import Batch
from callcenter.commands import TranslatedCommand


class Command(TranslatedCommand):
    help = gettext_lazy(
        "Compare the per-batch job counts kept by the database triggers with "
        "COUNT(*) over the jobs; --repair corrects any difference."
    )

    def add_arguments(self, parser: Any) -> None:
        mode = parser.add_mutually_exclusive_group(required=True)
        mode.add_argument(
            "--check",
            action="store_true",
            help=_("Report drift and exit with status 1 if there is any."),
        )
        mode.add_argument(
            "--repair", action="store_true", help=_("Report drift and correct it.")
        )
        parser.add_argument(
            "--batch",
            action="append",
            dest="batch_ids",
            metavar="BATCH_ID",
            help=_("Only this batch (its public batch_id). May be repeated."),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not counts_are_kept():
            self.stdout.write(
                _(
                    "Counts are not kept on this database (SQLite counts the jobs "
                    "on every read); nothing to check."
                )
            )
            return
        pks = None
        names: dict[int, str] = {}
        if options["batch_ids"]:
            found = Batch.all_objects.filter(batch_id__in=options["batch_ids"])
            names = {b.pk: b.batch_id for b in found}
            missing = sorted(set(options["batch_ids"]) - set(names.values()))
            if missing:
                raise CommandError(
                    _("Unknown batch id(s): %(ids)s") % {"ids": ", ".join(missing)}
                )
            pks = list(names)
        drift = job_counts_repair(pks) if options["repair"] else job_count_drift(pks)
        if not names and drift:
            names = dict(
                Batch.all_objects.filter(
                    pk__in={d.batch_pk for d in drift}
                ).values_list("pk", "batch_id")
            )
        self._report(drift, names, repaired=options["repair"])
        if drift and options["check"]:
            raise SystemExit(1)

    def _report(self, drift: list[Drift], names: dict[int, str], repaired: bool):
        if not drift:
            self.stdout.write(self.style.SUCCESS(_("Counts match COUNT(*): no drift.")))
            return
        for d in drift:
            name = names.get(
                d.batch_pk, _("(batch pk %(pk)s, gone)") % {"pk": d.batch_pk}
            )
            self.stdout.write(
                _("%(name)s  %(status)s  kept %(kept)s  actual %(actual)s  (%(delta)s)")
                % {
                    "name": name,
                    "status": f"{d.status:<11}",
                    "kept": f"{d.kept:>10,}",
                    "actual": f"{d.actual:>10,}",
                    "delta": f"{d.delta:+,}",
                }
            )
        if repaired:
            self.stdout.write(
                self.style.SUCCESS(
                    _("Repaired %(count)s count(s).") % {"count": len(drift)}
                )
            )
        else:
            self.stdout.write(
                self.style.ERROR(
                    _("%(count)s count(s) drifted; run with --repair to fix.")
                    % {"count": len(drift)}
                )
            )
