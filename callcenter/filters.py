"""Query-string filters of /api/v1/ lists, on django-filter.

An invalid value is a 400 in the API's error shape (DjangoFilterBackend
raises a ValidationError, ``callcenter.api.exception_handler`` shapes it),
with the messages DRF's own fields give, so the filters read like the body
validation. An empty value (``?state=``) means no filter.
"""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet
from django_filters.utils import translate_validation

INVALID_CHOICE = '"%(value)s" is not a valid choice.'
MAX_LENGTH = "Ensure this field has no more than %(limit_value)d characters."


def choice_filter(choices: list[str], **kwargs: Any) -> django_filters.ChoiceFilter:
    return django_filters.ChoiceFilter(
        choices=[(c, c) for c in choices],
        error_messages={"invalid_choice": INVALID_CHOICE},
        **kwargs,
    )


def char_filter(max_length: int, **kwargs: Any) -> django_filters.CharFilter:
    return django_filters.CharFilter(
        max_length=max_length, error_messages={"max_length": MAX_LENGTH}, **kwargs
    )


def _unchanged(queryset: QuerySet, name: str, value: str) -> QuerySet:
    return queryset


def ordering_filter(choices: list[str], default: str) -> django_filters.ChoiceFilter:
    """One ordering among ``choices`` (not django-filter's OrderingFilter,
    which would take a comma list); ApiFilterSet applies it."""
    return choice_filter(choices, method=_unchanged, help_text=f"Default {default}.")


class ApiFilterSet(django_filters.FilterSet):
    """``ordering`` (if the set has one) is applied last, with
    ``default_ordering`` when absent and the id as the tie-breaker."""

    default_ordering = "-id"
    apply_ordering = True

    def filter_queryset(self, queryset: QuerySet) -> QuerySet:
        queryset = super().filter_queryset(queryset)
        if "ordering" not in self.filters or not self.apply_ordering:
            return queryset
        return queryset.order_by(self.chosen_ordering, "-id")

    @property
    def chosen_ordering(self) -> str:
        return self.form.cleaned_data.get("ordering") or self.default_ordering

    def validate(self) -> None:
        """For a view that uses the set without DjangoFilterBackend."""
        if not self.is_valid():
            raise translate_validation(self.errors)
