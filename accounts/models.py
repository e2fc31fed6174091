from __future__ import annotations

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.dialing import DEFAULT_NUMBER_TYPES, default_number_types


class Account(models.Model):
    """The tenant: it owns batches and jobs, has members and pays for calls."""

    name = models.CharField(max_length=200, verbose_name=_("name"))
    slug = models.SlugField(max_length=64, unique=True, verbose_name=_("slug"))
    # Whole credits. The CHECK below makes overspending impossible even if a
    # code path forgets to reserve first.
    credits = models.BigIntegerField(default=0, verbose_name=_("credits"))
    # Which numbers the account may call (accounts/dialing.py). Staff set
    # them, through accounts.services.account_set_dialing_rules.
    # db_default too: rows written by older code (or a migration test running
    # older models) still get the safe rules.
    allowed_number_types = models.JSONField(
        default=default_number_types,
        db_default=list(DEFAULT_NUMBER_TYPES),
        blank=True,
        help_text=_("Number types this account may call (NumberType values)."),
        verbose_name=_("allowed number types"),
    )
    allowed_countries = models.JSONField(
        default=list,
        db_default=[],
        blank=True,
        help_text=_(
            "ISO 3166 country codes this account may call; empty means "
            "every country except DIAL_HIGH_RISK_COUNTRIES."
        ),
        verbose_name=_("allowed countries"),
    )
    # Local dates (in the recipient's zone) on which none of the account's
    # jobs is dialled (jobs/rules/windows.py); "YYYY-MM-DD", sorted.
    holidays = models.JSONField(
        default=list,
        db_default=[],
        blank=True,
        help_text=_("Dates (YYYY-MM-DD) on which nothing is dialled."),
        verbose_name=_("holidays"),
    )
    # Caps (jobs/caps.py, README "Who may be called, and when"). The
    # frequency cap's default is the Florida and Oklahoma limit.
    max_calls_per_number_per_24h = models.PositiveIntegerField(
        default=3,
        db_default=3,
        validators=[MinValueValidator(1)],
        help_text=_(
            "Calls to one number in any rolling 24 hours, across the account's batches."
        ),
        verbose_name=_("max calls per number per 24 h"),
    )
    max_concurrent_calls = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text=_("Calls of this account in progress at once; empty: no cap."),
        verbose_name=_("max concurrent calls"),
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    class Meta:
        verbose_name = _("account")
        verbose_name_plural = _("accounts")
        ordering = ["name"]
        permissions = [("add_credits", "Can add credits to an account")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(credits__gte=0), name="account_credits_not_negative"
            ),
            models.CheckConstraint(
                condition=models.Q(max_calls_per_number_per_24h__gte=1),
                name="account_frequency_cap_positive",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A user belongs to exactly one account, with a role in it."""

    class Role(models.TextChoices):
        MEMBER = "member", _("Member (read and write)")
        VIEWER = "viewer", _("Viewer (read only)")

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="membership",
        verbose_name=_("user"),
    )
    account = models.ForeignKey(
        Account,
        on_delete=models.CASCADE,
        related_name="memberships",
        verbose_name=_("account"),
    )
    role = models.CharField(
        max_length=16, choices=Role.choices, default=Role.MEMBER, verbose_name=_("role")
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))

    class Meta:
        verbose_name = _("membership")
        verbose_name_plural = _("memberships")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(role__in=["member", "viewer"]),
                name="membership_role_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.account} ({self.role})"

    @property
    def can_write(self) -> bool:
        return self.role == self.Role.MEMBER


class IdempotencyKey(models.Model):
    """A POST's Idempotency-Key and the response it produced, so a retry
    returns the original answer instead of creating a second batch or import.

    The unique constraint is what makes concurrent retries safe: the second
    INSERT waits for the first transaction and then fails, and the retry reads
    the stored response (see accounts.idempotency).
    """

    account = models.ForeignKey(
        Account,
        on_delete=models.CASCADE,
        related_name="idempotency_keys",
        verbose_name=_("account"),
    )
    key = models.CharField(max_length=255, verbose_name=_("key"))
    method = models.CharField(max_length=8, verbose_name=_("method"))
    path = models.CharField(max_length=255, verbose_name=_("path"))
    # sha256 of method, path and body: the same key with another body is an
    # error, never a silent replay of a different request.
    fingerprint = models.CharField(max_length=64, verbose_name=_("fingerprint"))
    response_status = models.PositiveSmallIntegerField(
        verbose_name=_("response status")
    )
    response_body = models.JSONField(
        encoder=DjangoJSONEncoder, verbose_name=_("response body")
    )
    created_at = models.DateTimeField(
        default=timezone.now, db_index=True, verbose_name=_("created at")
    )

    class Meta:
        verbose_name = _("idempotency key")
        verbose_name_plural = _("idempotency keys")
        constraints = [
            models.UniqueConstraint(
                fields=["account", "key"], name="idempotency_key_unique_per_account"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.method} {self.path})"


class CreditEntry(models.Model):
    """The credit ledger: every change of an account's balance, signed.

    A call writes a ``reserve`` entry when it starts and a ``settle`` entry
    when it ends, both keyed by the job and its claim (``claimed_at``); the
    unique constraint makes them idempotent per claim, so a retried settle
    can never refund twice. A call that runs past its reserved minutes
    writes an ``extend`` entry for each further minute, keyed by the claim
    and the minute (``<claim>#<minute>``).
    """

    class Kind(models.TextChoices):
        ADD = "add", _("Credits added")
        RESERVE = "reserve", _("Reserved for a call")
        EXTEND = "extend", _("Reserved for a further minute of a call")
        SETTLE = "settle", _("Settled at call end")

    # credit_account_idx leads with the account: no index of its own, one
    # less to write for every reserve and settle. PROTECT: the ledger is the
    # account's financial history, so an account that has one cannot be
    # deleted (as one with batches or jobs cannot).
    account = models.ForeignKey(
        Account,
        on_delete=models.PROTECT,
        related_name="credit_entries",
        db_index=False,
        verbose_name=_("account"),
    )
    kind = models.CharField(max_length=16, choices=Kind.choices, verbose_name=_("kind"))
    # Positive adds to the balance, negative takes from it.
    amount = models.BigIntegerField(verbose_name=_("amount"))
    balance_after = models.BigIntegerField(verbose_name=_("balance after"))
    job_pk = models.BigIntegerField(null=True, blank=True, verbose_name=_("job pk"))
    claim_key = models.CharField(
        max_length=40, blank=True, default="", verbose_name=_("claim key")
    )
    source = models.CharField(
        max_length=16, blank=True, default="", verbose_name=_("source")
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
    note = models.CharField(
        max_length=255, blank=True, default="", verbose_name=_("note")
    )
    created_at = models.DateTimeField(
        auto_now_add=True, db_index=True, verbose_name=_("created at")
    )

    class Meta:
        verbose_name = _("credit entry")
        verbose_name_plural = _("credit entries")
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["account", "-created_at"], name="credit_account_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["job_pk", "claim_key", "kind"],
                condition=models.Q(job_pk__isnull=False),
                name="credit_once_per_claim",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.account} {self.kind} {self.amount:+d}"


class ApiToken(models.Model):
    """A user's API key, stored only as its SHA-256 digest.

    The key itself is shown once, when it is made (``create_api_token``), and
    cannot be read back: a copy of the database, a backup or an admin page
    leaks no usable key. ``prefix`` (its first characters) is kept so that
    people can tell keys apart. See accounts/tokens.py for why a plain SHA-256
    is the right hash for these keys.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="api_token",
        verbose_name=_("user"),
    )
    prefix = models.CharField(max_length=8, verbose_name=_("prefix"))
    key_hash = models.CharField(max_length=64, unique=True, verbose_name=_("key hash"))
    created_at = models.DateTimeField(
        default=timezone.now, verbose_name=_("created at")
    )

    class Meta:
        verbose_name_plural = _("API tokens")
        verbose_name = _("API token")

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"


class AccountEvent(models.Model):
    """The audit trail of accounts: who created one, and who changed its
    dialing rules; from where, and with what."""

    class Action(models.TextChoices):
        CREATED = "created", _("Created")
        DIALING_RULES_CHANGED = "dialing_rules_changed", _("Dialing rules changed")
        DNC_ADDED = "dnc_added", _("Numbers added to the do-not-call list")
        DNC_REMOVED = "dnc_removed", _("Number removed from the do-not-call list")

    # SET_NULL and the copied slug keep the record if the account goes.
    account = models.ForeignKey(
        Account,
        null=True,
        on_delete=models.SET_NULL,
        related_name="events",
        verbose_name=_("account"),
    )
    account_slug = models.CharField(
        max_length=64, db_index=True, verbose_name=_("account slug")
    )
    action = models.CharField(
        max_length=32, choices=Action.choices, verbose_name=_("action")
    )
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
    created_at = models.DateTimeField(
        default=timezone.now, db_index=True, verbose_name=_("created at")
    )

    class Meta:
        verbose_name = _("account event")
        verbose_name_plural = _("account events")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"account {self.account_slug} {self.action}"
