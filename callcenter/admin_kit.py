"""Pieces shared by the apps' admins: action permissions that answer 403,
messages that count what changed and what was skipped, read-only audit
trails and read-only model admins."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.utils.formats import date_format
from django.utils.timezone import localtime
from django.utils.translation import gettext_lazy


def join_outcome(
    *, changed: int, done: str, none: str, skipped: int, skipped_as: str
) -> str:
    """ "2 batches paused; 1 was already paused" and its variants.

    ``done`` and ``skipped_as`` are whole translated sentences with a
    ``%(count)d`` (from ``ngettext``), ``none`` the sentence for nothing
    changed: translators see complete phrases, never glued words."""
    parts = [done % {"count": changed} if changed else none]
    if skipped:
        parts.append(skipped_as % {"count": skipped})
    return "; ".join(parts)


class GuardedActionsMixin:
    """Actions answer 403, not "No action selected", to a user who lacks them.

    Django's admin silently ignores an action that ``get_actions`` filtered
    out. A view-only staff member posting one by hand should learn that it
    was refused.
    """

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ):
        if request.method == "POST" and "action" in request.POST:
            allowed = self.get_actions(request)  # type: ignore[attr-defined]
            wanted = [a for a in request.POST.getlist("action") if a]
            if any(name not in allowed for name in wanted):
                raise PermissionDenied
        return super().changelist_view(request, extra_context)  # type: ignore[misc]

    def report_errors(self, request: HttpRequest, errors: Iterable[str]) -> None:
        for error in errors:
            self.message_user(request, error, messages.ERROR)  # type: ignore[attr-defined]

    def report_outcome(
        self,
        request: HttpRequest,
        *,
        changed: int,
        done: str,
        none: str,
        skipped: int,
        skipped_as: str,
        errors: Iterable[str] = (),
        detail: str = "",
    ) -> None:
        """One message counting what an action changed and skipped (success
        if anything changed), then one per error. The texts are translated
        by the caller (see ``join_outcome``)."""
        if changed or skipped:
            message = join_outcome(
                changed=changed,
                done=done,
                none=none,
                skipped=skipped,
                skipped_as=skipped_as,
            )
            self.message_user(  # type: ignore[attr-defined]
                request,
                f"{message}; {detail}" if detail else message,
                messages.SUCCESS if changed else messages.WARNING,
            )
        self.report_errors(request, errors)


def exact_time(value: datetime | None) -> str:
    """Audit times to the second: "10:05 p.m." cannot order two clicks."""
    return date_format(localtime(value), "Y-m-d H:i:s T") if value else "-"


def describe_changes(changes: dict[str, Any]) -> str:
    parts = []
    for field, value in (changes or {}).items():
        if isinstance(value, list) and len(value) == 2:
            before, after = value
            parts.append(f"{field}: {before} → {after}")
        else:
            parts.append(f"{field}: {value}")
    return "; ".join(parts) or "-"


class AuditTrailInline(admin.TabularInline):
    """A read-only audit trail on its parent's page (batches and jobs).

    Whoever may see the parent sees its trail; nobody edits it.
    """

    extra = 0
    can_delete = False
    verbose_name_plural = gettext_lazy("audit trail")
    parent_perms: tuple[str, ...] = ()

    @admin.display(description=gettext_lazy("when"))
    def when(self, event: Any) -> str:
        return exact_time(event.created_at)

    @admin.display(description=gettext_lazy("changes"))
    def what(self, event: Any) -> str:
        return describe_changes(event.changes)

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_view_permission(self, request, obj=None) -> bool:
        return any(request.user.has_perm(perm) for perm in self.parent_perms)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
