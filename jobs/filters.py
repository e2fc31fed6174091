"""The job lists' query-string filters (django-filter)."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.db.models import QuerySet
from django_filters import CharFilter

from callcenter.api import PUBLIC_ID_RE
from callcenter.filters import (
    ApiFilterSet,
    char_filter,
    choice_filter,
    ordering_filter,
)
from jobs.imports import normalize_phone
from jobs.models import Job, JobStatus

JOB_ORDERING = [
    "id",
    "-id",
    "created_at",
    "-created_at",
    "priority",
    "-priority",
    "scheduled_at",
    "-scheduled_at",
    "status",
    "-status",
    "updated_at",
    "-updated_at",
]


class BatchIdField(forms.CharField):
    def clean(self, value: str | None) -> str:
        value = super().clean(value)
        if value and not PUBLIC_ID_RE.match(value):
            raise forms.ValidationError("Not a valid batch id.")
        return value


class PhoneField(forms.CharField):
    """Any format; cleaned to E.164 in DEFAULT_PHONE_REGION."""

    def clean(self, value: str | None) -> str:
        value = super().clean(value)
        if not value:
            return value
        normalised = normalize_phone(value, settings.DEFAULT_PHONE_REGION)
        if normalised is None:
            raise forms.ValidationError("Not a valid phone number.")
        return normalised


class BatchIdFilter(CharFilter):
    field_class = BatchIdField


class PhoneFilter(CharFilter):
    field_class = PhoneField


class JobFilter(ApiFilterSet):
    """A batch's jobs: ?status= and ?ordering=. The batch's job list pages
    in its own order (jobs.pagination), so this set only validates it."""

    status = choice_filter(
        JobStatus.values,
        method="filter_status",
        help_text="`done` and `completed` both mean completed.",
    )
    ordering = ordering_filter(JOB_ORDERING, "-id (newest first)")

    apply_ordering = False

    class Meta:
        model = Job
        fields: list[str] = []

    def filter_status(self, queryset: QuerySet, name: str, status: str) -> QuerySet:
        return queryset.with_status(status)  # type: ignore[attr-defined]


class AccountJobFilter(JobFilter):
    """The account's jobs: also ?batch= and ?phone=."""

    batch = char_filter(
        64, BatchIdFilter, method="filter_batch", help_text="A public batch_id."
    )
    phone = char_filter(
        40,
        PhoneFilter,
        field_name="phone_number",
        help_text="A phone number in any format; matched in E.164.",
    )

    apply_ordering = True

    def filter_batch(self, queryset: QuerySet, name: str, batch_id: str) -> QuerySet:
        return queryset.filter(batch__batch_id=batch_id, batch__deleted_at__isnull=True)
