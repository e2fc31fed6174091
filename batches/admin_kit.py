"""Pieces shared by the batch and job admins: action permissions that answer
403, and messages that count what changed and what was skipped."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest


def plural(n: int, singular: str, plural_: str) -> str:
    return f"{n} {singular if n == 1 else plural_}"


def outcome_message(
    *,
    changed: int,
    verb: str,
    skipped: int,
    skipped_as: str,
    singular: str,
    plural_: str,
) -> str:
    """ "2 batches paused; 1 was already paused" and its variants."""
    if changed and skipped:
        was = "was" if skipped == 1 else "were"
        return (
            f"{plural(changed, singular, plural_)} {verb}; {skipped} {was} {skipped_as}"
        )
    if changed:
        return f"{plural(changed, singular, plural_)} {verb}"
    if skipped:
        was = "was" if skipped == 1 else "were"
        return f"No {plural_} {verb}; {skipped} {was} {skipped_as}"
    return f"No {plural_} {verb}"


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
        verb: str,
        skipped: int,
        skipped_as: str,
        errors: Iterable[str] = (),
        detail: str = "",
    ) -> None:
        """One message counting what an action changed and skipped, in the
        model's own words (success if anything changed), then one per error."""
        if changed or skipped:
            meta = self.model._meta  # type: ignore[attr-defined]
            message = outcome_message(
                changed=changed,
                verb=verb,
                skipped=skipped,
                skipped_as=skipped_as,
                singular=str(meta.verbose_name),
                plural_=str(meta.verbose_name_plural),
            )
            self.message_user(  # type: ignore[attr-defined]
                request,
                f"{message}; {detail}" if detail else message,
                messages.SUCCESS if changed else messages.WARNING,
            )
        self.report_errors(request, errors)
