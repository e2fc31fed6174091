"""The batch list's query-string filters (django-filter)."""

from __future__ import annotations

from django.db.models import QuerySet

from batches.models import Batch
from callcenter.filters import ApiFilterSet, choice_filter, ordering_filter

BATCH_ORDERING = ["created_at", "-created_at", "priority", "-priority", "name", "-name"]


class BatchFilter(ApiFilterSet):
    state = choice_filter(
        ["active", "paused", "cancelled", "completed"], method="filter_state"
    )
    ordering = ordering_filter(BATCH_ORDERING, "-created_at")

    default_ordering = "-created_at"

    class Meta:
        model = Batch
        fields: list[str] = []

    def filter_state(self, queryset: QuerySet, name: str, state: str) -> QuerySet:
        if state == "cancelled":
            return queryset.filter(cancelled_at__isnull=False)
        queryset = queryset.filter(cancelled_at__isnull=True)
        if state == "completed":
            return queryset.filter(completed_at__isnull=False)
        return queryset.filter(completed_at__isnull=True, is_active=(state == "active"))
