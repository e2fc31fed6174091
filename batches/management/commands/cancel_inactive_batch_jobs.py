"""Cancel the pending and scheduled jobs of inactive batches.

The original system's maintenance script, made safe to run by hand or from
cron: it previews with --dry-run, filters by batch and by how long a batch has
been inactive, asks before acting (or requires --yes when no one is at a
terminal), cancels in committed chunks with a progress bar, and is idempotent.

Inactive means paused, cancelled or deleted. For a paused batch only pending
and scheduled jobs are cancelled: suspended jobs wait for credits, and calls
in progress finish. For a cancelled or deleted batch suspended jobs go too.
"""

from __future__ import annotations

import re
import time
from datetime import timedelta
from typing import Any

from django.core.management.base import CommandError, OutputWrapper
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from batches.operations import inactive_sweep_start
from batches.selectors import batch_sweepable_counts, inactive_batches
from batches.services import INACTIVE_SWEEP_REASON, batch_cancel_inactive_jobs
from callcenter.actor import Actor
from callcenter.commands import TranslatedCommand

COMMAND_NAME = "cancel_inactive_batch_jobs"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_PART = re.compile(r"(\d+)([smhdw])")


def parse_duration(value: str) -> timedelta:
    """'90s', '30m', '2h', '7d', '1w', or a combination such as '1h30m'."""
    text = value.strip().lower()
    if not text or not re.fullmatch(r"(?:\d+[smhdw])+", text):
        raise CommandError(
            _(
                "--paused-for: %(value)r is not a duration; use e.g. 30m, 2h, 7d "
                "or 1h30m (units: s, m, h, d, w)"
            )
            % {"value": value}
        )
    seconds = sum(int(n) * _UNITS[u] for n, u in _DURATION_PART.findall(text))
    if seconds <= 0:
        raise CommandError(_("--paused-for must be longer than zero"))
    return timedelta(seconds=seconds)


class ProgressBar:
    """A one-line bar redrawn in place at a terminal; elsewhere (cron, logs)
    a line at every tenth of the way, so logs stay short."""

    def __init__(self, stream: OutputWrapper, total: int, width: int = 30) -> None:
        self.stream = stream
        self.total = max(total, 1)
        self.width = width
        self.tty = stream.isatty()
        self.started = time.monotonic()
        self._last_decile = -1

    def update(self, done: int) -> None:
        fraction = min(done / self.total, 1.0)
        if self.tty:
            filled = int(self.width * fraction)
            bar = "#" * filled + "." * (self.width - filled)
            self.stream.write(
                f"\r[{bar}] "
                + _("%(done)s/%(total)s jobs %(percent)s")
                % {
                    "done": f"{done:,}",
                    "total": f"{self.total:,}",
                    "percent": f"{fraction:4.0%}",
                },
                ending="",
            )
            self.stream.flush()
            return
        decile = int(fraction * 10)
        if decile != self._last_decile:
            self._last_decile = decile
            self.stream.write(
                _("progress: %(done)s/%(total)s jobs %(percent)s")
                % {
                    "done": f"{done:,}",
                    "total": f"{self.total:,}",
                    "percent": f"{fraction:.0%}",
                }
            )

    def finish(self) -> None:
        if self.tty:
            self.stream.write("")


class Command(TranslatedCommand):
    help = gettext_lazy(
        "Cancel the pending and scheduled jobs of inactive (paused, cancelled or "
        "deleted) batches, in chunks, with an audit record per batch."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help=_(
                "Print, per batch, how many jobs would be cancelled; change nothing."
            ),
        )
        parser.add_argument(
            "--batch",
            action="append",
            dest="batch_ids",
            metavar="BATCH_ID",
            help=_("Only this batch (its public batch_id). May be repeated."),
        )
        parser.add_argument(
            "--paused-for",
            metavar="DURATION",
            help=_("Only batches inactive for longer than this, e.g. 30m, 2h, 7d."),
        )
        parser.add_argument(
            "--reason",
            default=INACTIVE_SWEEP_REASON,
            help=_("cancel_reason for the jobs (default: %(reason)r).")
            % {"reason": INACTIVE_SWEEP_REASON},
        )
        parser.add_argument(
            "--yes",
            action="store_true",
            help=_(
                "Do not ask for confirmation. Required when stdin is not a terminal."
            ),
        )
        parser.add_argument(
            "--async",
            action="store_true",
            dest="run_async",
            help=_(
                "Start one background operation per batch (run by the qcluster) "
                "and return at once; follow them in the admin or the API."
            ),
        )
        parser.add_argument(
            "--chunk-size",
            type=int,
            default=None,
            help=_("Jobs per committed chunk (default: JOB_SWEEP_CHUNK_SIZE)."),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        inactive_before = None
        if options["paused_for"]:
            inactive_before = timezone.now() - parse_duration(options["paused_for"])
        reason = options["reason"].strip()
        if not reason:
            raise CommandError(_("--reason must not be empty"))
        chunk_size = options["chunk_size"]
        if chunk_size is not None and chunk_size < 1:
            raise CommandError(_("--chunk-size must be at least 1"))

        batch_ids = options["batch_ids"]
        batches = inactive_batches(batch_ids=batch_ids, inactive_before=inactive_before)
        if batch_ids:
            self._warn_about_skipped(batch_ids, batches)
        counts = batch_sweepable_counts(batches)
        targets = [b for b in batches if counts[b.pk]]
        total = sum(counts[b.pk] for b in targets)

        for batch in targets:
            self.stdout.write(
                _("%(batch_id)s  %(state)s  %(count)s jobs  %(name)s")
                % {
                    "batch_id": batch.batch_id,
                    "state": f"{batch.state:<9}",
                    "count": f"{counts[batch.pk]:>10,}",
                    "name": batch.name,
                }
            )
        if not targets:
            self.stdout.write(
                _(
                    "Nothing to cancel: %(count)s inactive batch(es) matched, none "
                    "has pending or scheduled jobs."
                )
                % {"count": len(batches)}
            )
            return
        if options["dry_run"]:
            self.stdout.write(
                _(
                    "Dry run: would cancel %(jobs)s jobs in %(batches)s batch(es). "
                    "Nothing was changed."
                )
                % {"jobs": f"{total:,}", "batches": len(targets)}
            )
            return
        if not options["yes"]:
            self._confirm(total, len(targets))

        actor = Actor.command(COMMAND_NAME)
        if options["run_async"]:
            self._start_operations(targets, actor=actor, reason=reason)
            return
        bar = ProgressBar(self.stderr, total)
        started = time.monotonic()
        done = 0
        per_batch: list[tuple[str, int]] = []
        for batch in targets:
            base = done

            def report(n: int, base: int = base) -> None:
                bar.update(base + n)

            cancelled = batch_cancel_inactive_jobs(
                batch=batch,
                actor=actor,
                reason=reason,
                chunk_size=chunk_size,
                progress=report,
            )
            done += cancelled
            per_batch.append((batch.batch_id, cancelled))
        bar.update(done)
        bar.finish()
        elapsed = time.monotonic() - started
        skipped = [bid for bid, n in per_batch if n == 0]
        self.stdout.write(
            self.style.SUCCESS(
                _(
                    "Cancelled %(jobs)s jobs in %(batches)s batch(es) in "
                    "%(seconds)ss (reason: %(reason)r)."
                )
                % {
                    "jobs": f"{done:,}",
                    "batches": len(per_batch) - len(skipped),
                    "seconds": f"{elapsed:.1f}",
                    "reason": reason,
                }
            )
        )
        if skipped:
            self.stdout.write(
                _("Skipped %(count)s batch(es) resumed or emptied meanwhile: %(ids)s")
                % {"count": len(skipped), "ids": ", ".join(skipped)}
            )

    def _start_operations(
        self, batches: list[Any], *, actor: Actor, reason: str
    ) -> None:
        for batch in batches:
            operation = inactive_sweep_start(batch=batch, actor=actor, reason=reason)
            self.stdout.write(
                _("%(batch_id)s  operation %(operation_id)s  %(total)s jobs")
                % {
                    "batch_id": batch.batch_id,
                    "operation_id": operation.operation_id,
                    "total": f"{operation.total:>10,}",
                }
            )
        self.stdout.write(
            self.style.SUCCESS(
                _(
                    "Started %(count)s background operation(s); the qcluster runs "
                    "them. Progress: admin → Operations, or GET "
                    "/api/v1/operations/{id}."
                )
                % {"count": len(batches)}
            )
        )

    def _warn_about_skipped(self, requested: list[str], found: list[Any]) -> None:
        missing = sorted(set(requested) - {b.batch_id for b in found})
        for batch_id in missing:
            self.stderr.write(
                _(
                    "warning: %(batch_id)s is unknown, active, or not inactive long "
                    "enough; skipped"
                )
                % {"batch_id": batch_id}
            )

    def _confirm(self, total: int, batches: int) -> None:
        if not self.stdin_isatty():
            raise CommandError(
                _(
                    "stdin is not a terminal: pass --yes to cancel without a prompt "
                    "(or --dry-run to preview)"
                )
            )
        answer = input(
            _("Cancel %(jobs)s jobs in %(batches)s batch(es)? [y/N] ")
            % {"jobs": f"{total:,}", "batches": batches}
        )
        if answer.strip().lower() not in {"y", "yes"}:
            raise CommandError(_("Aborted; nothing was changed."))

    def stdin_isatty(self) -> bool:
        import sys

        return sys.stdin.isatty()
