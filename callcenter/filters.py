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
from django.utils.functional import lazy
from django_filters.utils import translate_validation
from rest_framework import serializers


def _drf_message(field: type[serializers.Field], code: str, **names: str) -> Any:
    """DRF's own message for ``code``, translated when it is raised, with
    DRF's ``{name}`` placeholders turned into Django's ``%(name)s``."""

    def message() -> str:
        text = str(field.default_error_messages[code])
        for name, value in names.items():
            text = text.replace("{" + name + "}", value)
        return text

    return lazy(message, str)()


INVALID_CHOICE = _drf_message(
    serializers.ChoiceField, "invalid_choice", input="%(value)s"
)
MAX_LENGTH = _drf_message(
    serializers.CharField, "max_length", max_length="%(limit_value)d"
)


def choice_filter(choices: list[str], **kwargs: Any) -> django_filters.ChoiceFilter:
    return django_filters.ChoiceFilter(
        choices=[(c, c) for c in choices],
        error_messages={"invalid_choice": INVALID_CHOICE},
        **kwargs,
    )


def char_filter(
    max_length: int,
    filter_class: type[django_filters.CharFilter] = django_filters.CharFilter,
    **kwargs: Any,
) -> django_filters.CharFilter:
    return filter_class(
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
