from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

E164_REGEX = r"^\+[1-9][0-9]{6,14}$"
validate_e164 = RegexValidator(
    E164_REGEX, "Enter a phone number in E.164 form, e.g. +14155550123."
)


class JobStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    SCHEDULED = "scheduled", _("Scheduled")
    IN_PROGRESS = "in_progress", _("In progress")
    COMPLETED = "completed", pgettext_lazy("job status", "Completed")
    DONE = "done", _("Done (legacy alias of completed)")
    FAILED = "failed", _("Failed")
    SUSPENDED = "suspended", _("Suspended (no credits)")
    CANCELLED = "cancelled", pgettext_lazy("job status", "Cancelled")


# `done` is the original system's name for `completed`; everywhere a job's
# outcome matters the two are one.
COMPLETED_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.DONE})
TERMINAL_STATUSES = COMPLETED_STATUSES | {JobStatus.FAILED, JobStatus.CANCELLED}
NON_TERMINAL_STATUSES = frozenset(set(JobStatus) - TERMINAL_STATUSES)
# What a batch delete or cancel turns into `cancelled`.
CANCELLABLE_STATUSES = frozenset(
    {
        JobStatus.PENDING,
        JobStatus.SCHEDULED,
        JobStatus.IN_PROGRESS,
        JobStatus.SUSPENDED,
    }
)


def normalize_status(value: str) -> str:
    """Map the legacy alias onto its canonical status."""
    return JobStatus.COMPLETED if value == JobStatus.DONE else value


class JobQuerySet(models.QuerySet["Job"]):
    def completed(self) -> JobQuerySet:
        return self.filter(status__in=COMPLETED_STATUSES)

    def terminal(self) -> JobQuerySet:
        return self.filter(status__in=TERMINAL_STATUSES)

    def non_terminal(self) -> JobQuerySet:
        return self.exclude(status__in=TERMINAL_STATUSES)

    def with_status(self, status: str) -> JobQuerySet:
        """Filter by status; asking for `completed` or `done` returns both."""
        if normalize_status(status) == JobStatus.COMPLETED:
            return self.completed()
        return self.filter(status=status)


class Job(models.Model):
    # No single-column indexes on the two foreign keys: job_account_status_idx
    # and job_batch_status_idx lead with them and serve every lookup. Every
    # claim and every finish changes ``status`` and so rewrites each index
    # entry of the row; and the claim's "does this batch have a pending job?"
    # probe, given a plain (batch_id) index, walked the batch's finished jobs
    # before reaching a pending one (measured: the claim fell to 0.38x the raw
    # CTE at 8 clients; without the index it matches it).
    account = models.ForeignKey(
        "accounts.Account",
        on_delete=models.PROTECT,
        related_name="jobs",
        db_index=False,
        verbose_name=_("account"),
    )
    # Nullable: a job with no batch is valid and workers take it. PROTECT,
    # because a job silently losing its batch would become claimable.
    batch = models.ForeignKey(
        "batches.Batch",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="jobs",
        db_index=False,
        verbose_name=_("batch"),
    )
    phone_number = models.CharField(
        max_length=16, validators=[validate_e164], verbose_name=_("phone number")
    )
    variables = models.JSONField(default=dict, blank=True, verbose_name=_("variables"))
    status = models.CharField(
        max_length=16,
        choices=JobStatus.choices,
        default=JobStatus.PENDING,
        verbose_name=_("status"),
    )
    priority = models.IntegerField(
        default=0, help_text=_("Higher runs first."), verbose_name=_("priority")
    )
    scheduled_at = models.DateTimeField(
        null=True, blank=True, verbose_name=_("scheduled at")
    )
    # An IANA zone that replaces the zones of the number (jobs/rules/windows.py).
    timezone = models.CharField(
        max_length=64,
        blank=True,
        default="",
        db_default="",
        help_text=_("IANA time zone of the recipient; empty: from the number."),
        verbose_name=_("time zone"),
    )
    attempts = models.PositiveIntegerField(default=0, verbose_name=_("attempts"))
    max_attempts = models.PositiveIntegerField(
        default=3, verbose_name=_("max attempts")
    )

    # Owned by workers.
    claimed_by = models.CharField(
        max_length=200, blank=True, default="", verbose_name=_("claimed by")
    )
    # A fresh random value per worker process, set by the claim. Every later
    # write of the worker matches it as well as ``claimed_by``: a second
    # process started with the same --worker-id cannot touch these jobs.
    claim_token = models.CharField(
        max_length=32,
        blank=True,
        default="",
        db_default="",
        verbose_name=_("claim token"),
    )
    claimed_at = models.DateTimeField(
        null=True, blank=True, verbose_name=_("claimed at")
    )
    lease_expires_at = models.DateTimeField(
        null=True, blank=True, verbose_name=_("lease expires at")
    )
    dialed_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_("Set just before the dialer is asked to call."),
        verbose_name=_("dialed at"),
    )
    call_id = models.CharField(
        max_length=200, blank=True, default="", verbose_name=_("call id")
    )
    started_at = models.DateTimeField(
        null=True, blank=True, verbose_name=_("started at")
    )
    finished_at = models.DateTimeField(
        null=True, blank=True, verbose_name=_("finished at")
    )
    result = models.JSONField(null=True, blank=True, verbose_name=_("result"))
    attempt_log = models.JSONField(
        default=list, blank=True, verbose_name=_("attempt log")
    )
    last_error = models.TextField(blank=True, default="", verbose_name=_("last error"))
    cancel_reason = models.CharField(
        max_length=255, blank=True, default="", verbose_name=_("cancel reason")
    )
    # Why the job was stopped, as a code: "dnc", "opt_out", "no_consent",
    # "number_not_allowed"... (jobs/rules/); empty for a cancel by hand.
    stop_code = models.CharField(
        max_length=32,
        blank=True,
        default="",
        db_default="",
        verbose_name=_("stop code"),
    )
    consent_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_(
            "When the person gave prior express consent to be called; needed "
            "for batches with an AI or prerecorded voice."
        ),
        verbose_name=_("consent at"),
    )

    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    objects = JobQuerySet.as_manager()

    # Not a column: the fencing token of the attempt ``mark_dialed`` just
    # wrote for this job (its CallAttempt row), carried to the dialer.
    attempt_token: str = ""

    class Meta:
        verbose_name = _("job")
        verbose_name_plural = _("jobs")
        ordering = ["-id"]
        indexes = [
            # (batch, status, id): per-batch counts, and the keyset walk of the
            # chunked cancel/delete sweeps (see batches.services).
            models.Index(fields=["batch", "status", "id"], name="job_batch_status_idx"),
            # A batch's first and last call times (stats) without reading its
            # jobs. Partial: a claim of a never-dialled job (started_at still
            # NULL) adds no entry, so the claim does not pay for it.
            models.Index(
                fields=["batch", "started_at"],
                name="job_batch_started_idx",
                condition=models.Q(started_at__isnull=False),
            ),
            # The claim index. Only claimable rows are in it: finished jobs
            # never are, and the claim reaches it through active batches only,
            # so a paused batch's backlog is never walked.
            models.Index(
                "batch",
                models.F("priority").desc(),
                "id",
                name="job_claim_idx",
                condition=models.Q(status="pending"),
            ),
            models.Index(
                models.F("priority").desc(),
                "id",
                name="job_claim_nobatch_idx",
                condition=models.Q(status="pending", batch__isnull=True),
            ),
            models.Index(
                fields=["scheduled_at"],
                name="job_due_idx",
                condition=models.Q(status="scheduled"),
            ),
            models.Index(
                fields=["lease_expires_at"],
                name="job_lease_idx",
                condition=models.Q(status="in_progress"),
            ),
            models.Index(fields=["account", "status"], name="job_account_status_idx"),
            # The dashboard's "calls per minute" and "workers seen" read the
            # last hour only; partial, so the claim's updates (finished_at is
            # still NULL) never touch it.
            models.Index(
                fields=["finished_at"],
                name="job_finished_idx",
                condition=models.Q(finished_at__isnull=False),
            ),
            models.Index(fields=["phone_number"], name="job_phone_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=JobStatus.values), name="job_status_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(phone_number__regex=E164_REGEX),
                name="job_phone_e164",
            ),
            models.CheckConstraint(
                condition=models.Q(max_attempts__gte=1),
                name="job_max_attempts_positive",
            ),
            models.CheckConstraint(
                condition=~models.Q(status="scheduled")
                | models.Q(scheduled_at__isnull=False),
                name="job_scheduled_has_time",
            ),
            # One call at a time per number, across every account, batch and
            # worker: a second dial mark of a number in a call is refused by
            # the database itself (jobs/caps.py).
            models.UniqueConstraint(
                fields=["phone_number"],
                condition=models.Q(status="in_progress", dialed_at__isnull=False),
                name="job_one_call_per_number",
            ),
            # The same number twice in one batch would be called twice.
            models.UniqueConstraint(
                fields=["batch", "phone_number"],
                condition=models.Q(batch__isnull=False),
                name="job_unique_phone_per_batch",
            ),
        ]

    def __str__(self) -> str:
        return f"Job {self.pk} {self.phone_number} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def is_completed(self) -> bool:
        return self.status in COMPLETED_STATUSES


class JobEvent(models.Model):
    """Audit of transitions that people trigger on single jobs (cancel,
    requeue). Worker transitions are recorded on the job itself: claimed_by,
    claimed_at and the attempt log."""

    job = models.ForeignKey(
        Job,
        null=True,
        on_delete=models.SET_NULL,
        related_name="events",
        verbose_name=_("job"),
    )
    job_pk = models.BigIntegerField(db_index=True, verbose_name=_("job pk"))
    account = models.ForeignKey(
        "accounts.Account",
        null=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("account"),
    )
    action = models.CharField(max_length=32, verbose_name=_("action"))
    source = models.CharField(max_length=16, verbose_name=_("source"))
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("actor"),
    )
    actor_label = models.CharField(
        max_length=150, blank=True, default="", verbose_name=_("actor label")
    )
    remote_addr = models.GenericIPAddressField(
        null=True, blank=True, verbose_name=_("remote addr")
    )
    changes = models.JSONField(default=dict, blank=True, verbose_name=_("changes"))
    reason = models.CharField(
        max_length=255, blank=True, default="", verbose_name=_("reason")
    )
    created_at = models.DateTimeField(
        auto_now_add=True, db_index=True, verbose_name=_("created at")
    )

    class Meta:
        verbose_name = _("job event")
        verbose_name_plural = _("job events")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"job {self.job_pk} {self.action}"


class CallRecord(models.Model):
    """What was dialled for one job, kept when the job itself is deleted.

    A batch deleted with ``delete_jobs=true`` (and the JOB_RETENTION_DAYS
    purge) removes the job rows, as the original system's contract says, but
    the record of the calls made stays: who was called, when, how often, with
    what outcome, for how long and at what cost. Telemarketing claims (the US
    TCPA's run four years) ask exactly that. Only ``purge_call_records``
    removes records, once older than CALL_RECORD_RETENTION_DAYS.

    Detached from the job: ``job_pk`` is a plain number, and the account is
    PROTECTed so that an account cannot be deleted from under its history.
    """

    job_pk = models.BigIntegerField(unique=True, verbose_name=_("job pk"))
    account = models.ForeignKey(
        "accounts.Account",
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
        verbose_name=_("account"),
    )
    batch = models.ForeignKey(
        "batches.Batch",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
        verbose_name=_("batch"),
    )
    batch_public_id = models.CharField(
        max_length=64, blank=True, default="", verbose_name=_("batch public id")
    )
    phone_number = models.CharField(max_length=16, verbose_name=_("phone number"))
    # The job's status and attempts when it was deleted, and its attempt log:
    # one entry per call, with outcome, start, end, duration and call id.
    status = models.CharField(max_length=16, verbose_name=_("status"))
    attempts = models.PositiveIntegerField(default=0, verbose_name=_("attempts"))
    attempt_log = models.JSONField(
        default=list, blank=True, verbose_name=_("attempt log")
    )
    last_outcome = models.CharField(
        max_length=32, blank=True, default="", verbose_name=_("last outcome")
    )
    duration_seconds = models.FloatField(default=0, verbose_name=_("duration seconds"))
    # Credits the ledger charged for the job's calls (reservations less
    # refunds) when it was deleted.
    cost = models.BigIntegerField(default=0, verbose_name=_("cost"))
    last_call_at = models.DateTimeField(
        help_text=_("When its last call was dialled; retention counts from here."),
        verbose_name=_("last call at"),
    )
    job_created_at = models.DateTimeField(verbose_name=_("job created at"))
    deleted_at = models.DateTimeField(verbose_name=_("deleted at"))
    deleted_because = models.CharField(max_length=64, verbose_name=_("deleted because"))

    class Meta:
        verbose_name = _("call record")
        verbose_name_plural = _("call records")
        ordering = ["-last_call_at", "-id"]
        indexes = [
            models.Index(fields=["account", "-last_call_at"], name="callrec_acct_idx"),
            models.Index(fields=["phone_number"], name="callrec_phone_idx"),
            models.Index(fields=["last_call_at"], name="callrec_age_idx"),
        ]

    def __str__(self) -> str:
        return f"Call record of job {self.job_pk} {self.phone_number}"


class CallAttempt(models.Model):
    """One dial of a job: written (committed) before the provider is asked
    to place the call, then filled in by the provider's events.

    The job's attempt history is read from these rows. ``token`` is the
    attempt's fencing token: it travels in the provider's callback URL, and
    only the attempt that still matches the job's current dial (the job in
    progress, under the same claim, dialled at ``started_at``) may move the
    job on. A late event for a superseded attempt is stored in ``events``
    and changes nothing else.

    The job is referenced without a database constraint: attempts outlive a
    deleted job, as call records do (docs/architecture.md#a-calls-life), and
    ``purge_call_records`` removes them past CALL_RECORD_RETENTION_DAYS.
    """

    job = models.ForeignKey(
        Job,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="call_attempts",
        verbose_name=_("job"),
    )
    attempt = models.PositiveIntegerField(verbose_name=_("attempt"))
    # The job's account and batch when it was dialled, as plain numbers: the
    # frequency cap counts an account's dials of a number, the circuit
    # breaker a batch's last ended calls (jobs/caps.py, jobs/breaker.py).
    account_pk = models.BigIntegerField(
        null=True, blank=True, verbose_name=_("account pk")
    )
    batch_pk = models.BigIntegerField(null=True, blank=True, verbose_name=_("batch pk"))
    dialer = models.CharField(max_length=32, verbose_name=_("dialer"))
    token = models.CharField(max_length=32, unique=True, verbose_name=_("token"))
    phone_number = models.CharField(max_length=16, verbose_name=_("phone number"))
    # The claim the attempt was dialled under (the fence, with started_at).
    worker_id = models.CharField(max_length=200, verbose_name=_("worker id"))
    claim_token = models.CharField(
        max_length=32, blank=True, default="", verbose_name=_("claim token")
    )
    claimed_at = models.DateTimeField(null=True, verbose_name=_("claimed at"))
    provider_call_id = models.CharField(
        max_length=64, blank=True, default="", verbose_name=_("provider call id")
    )
    provider_status = models.CharField(
        max_length=32, blank=True, default="", verbose_name=_("provider status")
    )
    answered_by = models.CharField(
        max_length=32, blank=True, default="", verbose_name=_("answered by")
    )
    started_at = models.DateTimeField(verbose_name=_("started at"))
    answered_at = models.DateTimeField(
        null=True, blank=True, verbose_name=_("answered at")
    )
    ended_at = models.DateTimeField(null=True, blank=True, verbose_name=_("ended at"))
    duration_seconds = models.FloatField(
        null=True, blank=True, verbose_name=_("duration seconds")
    )
    outcome = models.CharField(
        max_length=32, blank=True, default="", verbose_name=_("outcome")
    )
    cost = models.BigIntegerField(null=True, blank=True, verbose_name=_("cost"))
    error = models.TextField(blank=True, default="", verbose_name=_("error"))
    # The send slot the shared pacing granted (jobs/pacing.py), on the
    # database's clock; empty when the dialer is not paced.
    slot_at = models.DateTimeField(null=True, blank=True, verbose_name=_("slot at"))
    hangup_requested_at = models.DateTimeField(
        null=True, blank=True, verbose_name=_("hang-up requested at")
    )
    hangup_reason = models.CharField(
        max_length=255, blank=True, default="", verbose_name=_("hang-up reason")
    )
    # Every raw provider event received, in arrival order, duplicates and
    # late ones included.
    events = models.JSONField(default=list, blank=True, verbose_name=_("events"))

    class Meta:
        verbose_name = _("call attempt")
        verbose_name_plural = _("call attempts")
        ordering = ["job_id", "attempt", "id"]
        indexes = [
            models.Index(fields=["job", "id"], name="callattempt_job_idx"),
            models.Index(
                fields=["provider_call_id"],
                name="callattempt_call_idx",
                condition=~models.Q(provider_call_id=""),
            ),
            # Reconciliation: attempts with no outcome yet.
            models.Index(
                fields=["started_at"],
                name="callattempt_open_idx",
                condition=models.Q(ended_at__isnull=True),
            ),
            models.Index(fields=["started_at"], name="callattempt_age_idx"),
            # The frequency cap: an account's dials of a number in 24 hours.
            models.Index(
                fields=["account_pk", "phone_number", "started_at"],
                name="callattempt_number_idx",
            ),
            # The circuit breaker: a batch's last ended calls.
            models.Index(
                fields=["batch_pk", "ended_at"],
                name="callattempt_batch_end_idx",
                condition=models.Q(ended_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"Attempt {self.attempt} of job {self.job_id}"

    @property
    def is_ended(self) -> bool:
        return self.ended_at is not None


class DialerPace(models.Model):
    """The next free send slot of one provider account, shared by every
    worker process on every host (jobs/pacing.py): a worker takes a slot
    with one UPDATE of this row, on the database's clock."""

    key = models.CharField(max_length=200, unique=True, verbose_name=_("key"))
    next_slot = models.DateTimeField(verbose_name=_("next slot"))
    # When the last request was let through to the provider (the second
    # stage, just before the request; jobs/pacing.py).
    last_send = models.DateTimeField(null=True, blank=True, verbose_name=_("last send"))

    class Meta:
        verbose_name = _("dialer pace")
        verbose_name_plural = _("dialer paces")

    def __str__(self) -> str:
        return self.key


class DncSource(models.TextChoices):
    API = "api", _("API")
    ADMIN = "admin", _("Admin")
    OPT_OUT = "opt_out", _("Opt-out")


class DncEntry(models.Model):
    """A number on a do-not-call list: an account's (``account`` set) or the
    system-wide list staff keep (``account`` NULL), which applies to every
    account. The dial gate never dials a number on either (jobs/rules/dnc.py).
    """

    account = models.ForeignKey(
        "accounts.Account",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="dnc_entries",
        db_index=False,
        verbose_name=_("account"),
        help_text=_("Empty: the system-wide list, for every account."),
    )
    phone_number = models.CharField(
        max_length=16, validators=[validate_e164], verbose_name=_("phone number")
    )
    source = models.CharField(
        max_length=16,
        choices=DncSource.choices,
        default=DncSource.API,
        verbose_name=_("source"),
    )
    added_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("added by"),
    )
    # The job during whose call the person opted out, if any.
    job_pk = models.BigIntegerField(null=True, blank=True, verbose_name=_("job"))
    note = models.CharField(
        max_length=255, blank=True, default="", verbose_name=_("note")
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))

    class Meta:
        verbose_name = _("do-not-call entry")
        verbose_name_plural = _("do-not-call entries")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(phone_number__regex=E164_REGEX),
                name="dnc_phone_e164",
            ),
            # The gate's lookups: (account, number) and (number) system-wide.
            models.UniqueConstraint(
                fields=["account", "phone_number"],
                condition=models.Q(account__isnull=False),
                name="dnc_unique_account_phone",
            ),
            models.UniqueConstraint(
                fields=["phone_number"],
                condition=models.Q(account__isnull=True),
                name="dnc_unique_system_phone",
            ),
        ]

    def __str__(self) -> str:
        return self.phone_number
