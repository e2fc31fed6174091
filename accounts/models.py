from __future__ import annotations

from django.conf import settings
from django.db import models


class Account(models.Model):
    """The tenant: it owns batches and jobs, has members and pays for calls."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=64, unique=True)
    # Whole credits. The CHECK below makes overspending impossible even if a
    # code path forgets to reserve first.
    credits = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(credits__gte=0), name="account_credits_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A user belongs to exactly one account, with a role in it."""

    class Role(models.TextChoices):
        MEMBER = "member", "Member (read and write)"
        VIEWER = "viewer", "Viewer (read only)"

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="membership"
    )
    account = models.ForeignKey(
        Account, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
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
