"""Who performs a transition, and through which interface.

Every service that changes state takes an ``Actor`` so the audit trail can
say who did it, from where and when, whatever the interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db import models
from django.utils.translation import gettext_lazy as _

if TYPE_CHECKING:
    from django.http import HttpRequest


class Source(models.TextChoices):
    API = "api", _("API")
    ADMIN = "admin", _("Admin")
    COMMAND = "command", _("Management command")
    WORKER = "worker", _("Worker")
    SYSTEM = "system", _("System")


@dataclass(frozen=True)
class Actor:
    source: str
    user: Any = None  # a django.contrib.auth user, or None for the system
    remote_addr: str | None = None
    label: str = ""  # e.g. the worker id or command name

    @property
    def display(self) -> str:
        """The label, or the user's name: what audit rows and logs show."""
        return self.label or (self.user.get_username() if self.user else "")

    def audit_fields(self) -> dict[str, Any]:
        """The who-and-from-where columns shared by every audit table."""
        return {
            "source": self.source,
            "actor": self.user,
            "actor_label": self.display,
            "remote_addr": self.remote_addr,
        }

    @classmethod
    def system(cls, label: str = "") -> Actor:
        return cls(source=Source.SYSTEM, label=label)

    @classmethod
    def command(cls, name: str) -> Actor:
        return cls(source=Source.COMMAND, label=name)

    @classmethod
    def worker(cls, worker_id: str) -> Actor:
        return cls(source=Source.WORKER, label=worker_id)

    @classmethod
    def from_request(cls, request: HttpRequest, source: str) -> Actor:
        user = getattr(request, "user", None)
        if user is not None and not user.is_authenticated:
            user = None
        return cls(
            source=source,
            user=user,
            remote_addr=request.META.get("REMOTE_ADDR") or None,
        )
