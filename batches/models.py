from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from callcenter.actor import Source
from jobs.rules.windows import configured_default_window, default_calling_window


def generate_batch_id() -> str:
    """A public id in the original system's form: batch-2025-10-25-144129-862530."""
    return timezone.now().strftime("batch-%Y-%m-%d-%H%M%S-%f")


class BatchQuerySet(models.QuerySet["Batch"]):
    def claimable(self) -> BatchQuerySet:
        """Batches whose jobs workers may take."""
        return self.filter(is_active=True, completed_at__isnull=True)

    def for_account(self, account_id: int) -> BatchQuerySet:
        return self.filter(account_id=account_id)


class LiveBatchManager(models.Manager["Batch"]):
    """The default manager hides deleted batches everywhere: API, admin, selectors."""

    def get_queryset(self) -> BatchQuerySet:
        return BatchQuerySet(self.model, using=self._db).filter(deleted_at__isnull=True)


class Voice(models.TextChoices):
    """Who speaks on a batch's calls. FCC 24-17: an AI-generated or
    prerecorded voice needs the person's prior express consent."""

    HUMAN = "human", _("Human")
    AI = "ai", _("AI voice")
    PRERECORDED = "prerecorded", _("Prerecorded voice")


class Batch(models.Model):
    class State(models.TextChoices):
        ACTIVE = "active", _("Active")
        PAUSED = "paused", _("Paused")
        CANCELLED = "cancelled", _("Cancelled")
        COMPLETED = "completed", _("Completed")
        DELETED = "deleted", _("Deleted")

    batch_id = models.CharField(
        max_length=64,
        unique=True,
        default=generate_batch_id,
        editable=False,
        verbose_name=_("batch id"),
    )
    account = models.ForeignKey(
        "accounts.Account",
        on_delete=models.PROTECT,
        related_name="batches",
        verbose_name=_("account"),
    )
    name = models.CharField(max_length=200, verbose_name=_("name"))
    description = models.TextField(
        blank=True, default="", verbose_name=_("description")
    )
    priority = models.IntegerField(
        default=0, help_text=_("Higher runs first."), verbose_name=_("priority")
    )
    is_active = models.BooleanField(default=True, verbose_name=_("is active"))
    # When its jobs may be dialled, in each recipient's local time
    # (jobs/rules/windows.py); CALLING_WINDOW_DEFAULT when not given, and the
    # federal hours for a row written without it (raw SQL).
    calling_window = models.JSONField(
        default=configured_default_window,
        db_default=default_calling_window(),
        help_text=_('{"start": "HH:MM", "end": "HH:MM", "days": ["mon", ...]}'),
        verbose_name=_("calling window"),
    )
    # Per call outcome: retry or not, after how long (jobs/rules/retries.py).
    # Only the outcomes set here differ from the defaults.
    retry_policy = models.JSONField(
        default=dict,
        db_default={},
        blank=True,
        help_text=_('Per outcome: {"retry": bool, "delay_seconds": int}.'),
        verbose_name=_("retry policy"),
    )
    voice = models.CharField(
        max_length=16,
        choices=Voice.choices,
        default=Voice.HUMAN,
        db_default=Voice.HUMAN,
        help_text=_("An AI or prerecorded voice calls only jobs with consent_at set."),
        verbose_name=_("voice"),
    )
    # Caps and the circuit breaker (jobs/caps.py, jobs/breaker.py).
    max_concurrent_calls = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text=_("Calls of this batch in progress at once; empty: no cap."),
        verbose_name=_("max concurrent calls"),
    )
    breaker = models.JSONField(
        null=True,
        blank=True,
        help_text=_(
            "Pause the batch when more than max_failure_ratio of its last "
            'window ended calls failed: {"window": 20, "max_failure_ratio": 0.5}.'
        ),
        verbose_name=_("circuit breaker"),
    )

    # Why the batch is paused, so that a person (or the credit logic) can tell
    # a manual pause from an automatic one and resume only what it paused.
    paused_at = models.DateTimeField(null=True, blank=True, verbose_name=_("paused at"))
    paused_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("paused by"),
    )
    pause_source = models.CharField(
        max_length=16,
        choices=Source.choices,
        blank=True,
        default="",
        verbose_name=_("pause source"),
    )
    pause_reason = models.CharField(
        max_length=255, blank=True, default="", verbose_name=_("pause reason")
    )
    # A staff pause (from the admin, or by any staff user) is a supervisor's
    # stop: a member cannot lift it through the API. Stored, not derived from
    # paused_by, so that it holds after that user is deleted.
    paused_by_staff = models.BooleanField(
        default=False, db_default=False, verbose_name=_("paused by staff")
    )

    cancelled_at = models.DateTimeField(
        null=True, blank=True, verbose_name=_("cancelled at")
    )
    completed_at = models.DateTimeField(
        null=True, blank=True, verbose_name=_("completed at")
    )
    deleted_at = models.DateTimeField(
        null=True, blank=True, verbose_name=_("deleted at")
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    objects = LiveBatchManager.from_queryset(BatchQuerySet)()
    all_objects = BatchQuerySet.as_manager()

    class Meta:
        verbose_name = _("batch")
        verbose_name_plural = _("batches")
        ordering = ["-created_at"]
        base_manager_name = "all_objects"
        indexes = [
            models.Index(fields=["is_active", "batch_id"], name="batch_active_id_idx"),
            # The claim walks active batches by priority; paused, cancelled,
            # completed and deleted batches are not in this index at all.
            models.Index(
                models.F("priority").desc(),
                "id",
                name="batch_claim_idx",
                condition=models.Q(is_active=True, completed_at__isnull=True),
            ),
            models.Index(fields=["account", "-created_at"], name="batch_account_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(cancelled_at__isnull=True)
                | models.Q(is_active=False),
                name="batch_cancelled_is_inactive",
            ),
            models.CheckConstraint(
                condition=models.Q(deleted_at__isnull=True) | models.Q(is_active=False),
                name="batch_deleted_is_inactive",
            ),
            models.CheckConstraint(
                condition=~models.Q(batch_id=""), name="batch_id_not_empty"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.batch_id})"

    @property
    def state(self) -> str:
        if self.deleted_at:
            return self.State.DELETED
        if self.cancelled_at:
            return self.State.CANCELLED
        if self.completed_at:
            return self.State.COMPLETED
        return self.State.ACTIVE if self.is_active else self.State.PAUSED


class BatchEvent(models.Model):
    """The audit trail: one row per batch transition. It outlives its batch."""

    class Action(models.TextChoices):
        CREATED = "created", _("Created")
        PAUSED = "paused", _("Paused")
        RESUMED = "resumed", _("Resumed")
        UPDATED = "updated", _("Updated")
        CANCELLED = "cancelled", _("Cancelled")
        DELETED = "deleted", _("Deleted")
        COMPLETED = "completed", _("Completed")
        JOBS_CANCELLED = "jobs_cancelled", _("Jobs cancelled")
        REOPENED = "reopened", _("Reopened")

    # SET_NULL and the copied public id keep the record after the batch row
    # itself is removed (a hard delete from a shell, or retention).
    batch = models.ForeignKey(
        Batch,
        null=True,
        on_delete=models.SET_NULL,
        related_name="events",
        verbose_name=_("batch"),
    )
    batch_public_id = models.CharField(
        max_length=64, db_index=True, verbose_name=_("batch public id")
    )
    account = models.ForeignKey(
        "accounts.Account",
        null=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("account"),
    )
    action = models.CharField(
        max_length=32, choices=Action.choices, verbose_name=_("action")
    )
    source = models.CharField(
        max_length=16, choices=Source.choices, verbose_name=_("source")
    )
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
        default=timezone.now, db_index=True, verbose_name=_("created at")
    )

    class Meta:
        verbose_name = _("batch event")
        verbose_name_plural = _("batch events")
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["batch", "-created_at"], name="event_batch_idx")
        ]

    def __str__(self) -> str:
        who = self.actor_label or (str(self.actor) if self.actor_id else self.source)
        return f"{self.batch_public_id} {self.action} by {who}"


class BatchJobCount(models.Model):
    """Jobs of a batch in one count bucket, as of the last fold.

    A batch's count in a bucket is this row plus the batch's rows in
    ``batches_batchjobcountdelta`` not yet folded in (a bare table the
    triggers append to, with no model; see batches/migrations/0008).
    Buckets are job statuses, except that ``pending`` and ``in_progress``
    share the bucket ``open`` (the claim moves jobs between them and so
    changes no count; ``in_progress`` is read live, see
    ``batches.job_counts``). Written only by the fold
    (``jobs.counts.fold_job_counts``) and nothing else.
    """

    # No database constraint: the rows may outlive a batch removed from a
    # shell; the repair drops those.
    batch = models.ForeignKey(
        Batch,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,  # batch_job_count_key leads with it
        related_name="+",
        verbose_name=_("batch"),
    )
    status = models.CharField(max_length=16, verbose_name=_("status"))
    n = models.BigIntegerField(default=0, verbose_name=_("n"))

    class Meta:
        verbose_name = _("batch job count")
        verbose_name_plural = _("batch job counts")
        constraints = [
            models.UniqueConstraint(
                fields=["batch", "status"], name="batch_job_count_key"
            )
        ]

    def __str__(self) -> str:
        return f"batch {self.batch_id} {self.status} = {self.n}"


class Operation(models.Model):
    """A long sweep of a batch's jobs run in the background, with its progress.

    Cancelling or deleting a batch with more than ``SWEEP_INLINE_MAX_JOBS``
    jobs to sweep flips the batch at once and leaves the sweep to an
    operation (``batches.operations``); so does ``cancel_inactive_batch_jobs
    --async``. The row is the audit record of who asked and what was done,
    and the progress the API and the admin show. It outlives its batch.
    """

    class Kind(models.TextChoices):
        CANCEL = "cancel", _("Cancel the batch's jobs")
        DELETE = "delete", _("Cancel a deleted batch's jobs")
        DELETE_JOBS = "delete_jobs", _("Delete a deleted batch's jobs")
        INACTIVE_SWEEP = "inactive_sweep", _("Cancel an inactive batch's jobs")

    class State(models.TextChoices):
        PENDING = "pending", _("Pending")
        RUNNING = "running", _("Running")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")

    operation_id = models.UUIDField(
        default=uuid.uuid4, unique=True, editable=False, verbose_name=_("operation id")
    )
    account = models.ForeignKey(
        "accounts.Account",
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=_("account"),
    )
    batch = models.ForeignKey(
        Batch,
        null=True,
        on_delete=models.SET_NULL,
        related_name="operations",
        verbose_name=_("batch"),
    )
    batch_public_id = models.CharField(max_length=64, verbose_name=_("batch public id"))
    kind = models.CharField(max_length=16, choices=Kind.choices, verbose_name=_("kind"))
    state = models.CharField(
        max_length=16,
        choices=State.choices,
        default=State.PENDING,
        verbose_name=_("state"),
    )
    reason = models.CharField(
        max_length=255, blank=True, default="", verbose_name=_("reason")
    )
    total = models.BigIntegerField(default=0, verbose_name=_("total"))
    done = models.BigIntegerField(default=0, verbose_name=_("done"))
    cancelled_jobs = models.BigIntegerField(default=0, verbose_name=_("jobs cancelled"))
    deleted_jobs = models.BigIntegerField(default=0, verbose_name=_("jobs deleted"))
    errors = models.JSONField(default=list, blank=True, verbose_name=_("errors"))
    attempts = models.PositiveIntegerField(default=0, verbose_name=_("attempts"))
    # Who holds the run: a runner renews it after every chunk; one whose lease
    # expired was killed, and the resume pass takes the operation over.
    lease_expires_at = models.DateTimeField(
        null=True, blank=True, verbose_name=_("lease expires at")
    )
    source = models.CharField(
        max_length=16, choices=Source.choices, verbose_name=_("source")
    )
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
    created_at = models.DateTimeField(
        default=timezone.now, db_index=True, verbose_name=_("created at")
    )
    started_at = models.DateTimeField(
        null=True, blank=True, verbose_name=_("started at")
    )
    finished_at = models.DateTimeField(
        null=True, blank=True, verbose_name=_("finished at")
    )
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    class Meta:
        verbose_name = _("operation")
        verbose_name_plural = _("operations")
        ordering = ["-created_at", "-id"]
        indexes = [
            # The resume pass reads only the unfinished ones.
            models.Index(
                fields=["created_at"],
                name="operation_unfinished_idx",
                condition=models.Q(state__in=["pending", "running"]),
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.batch_public_id}"

    @property
    def finished(self) -> bool:
        return self.state in (self.State.SUCCEEDED, self.State.FAILED)

    @property
    def percent(self) -> int:
        if self.state == self.State.SUCCEEDED:
            return 100
        if self.total <= 0:
            return 0
        return min(100, int(100 * self.done / self.total))
