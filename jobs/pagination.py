"""Paging through the jobs of one batch, at any depth, in the same time.

The response keeps the API's usual shape, ``{count, next, previous,
results}``, and ``?page=N`` keeps working, with three changes underneath:

* ``count`` is the batch's kept job count (``batches.job_counts``), not a
  ``COUNT(*)`` over a million rows;
* a page within ``API_MAX_PAGE_OFFSET`` rows of *either* end is read from
  that end, so ``?page=last`` costs what ``?page=1`` costs;
* deeper than that, a page number is refused (400 ``page_too_deep``), and
  the ``next`` / ``previous`` links turn into ``?cursor=`` links (keyset
  pagination: "the rows after this one"), so a client that follows the
  links walks the whole batch, each page as fast as the first.

Under the default ordering (``-id``, and ``id``) a page is read through
job_batch_status_idx (batch, status, id), one short index range per status,
merged; other orderings sort the batch's jobs for every page, first and last
alike.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Q, QuerySet
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

from callcenter.api import ApiError, ApiPagination
from jobs.models import Job

CURSOR_PARAM = "cursor"


def _invalid_cursor() -> ApiError:
    return ApiError(
        "The cursor is not valid for this list; start again from page 1.",
        code="invalid",
        fields={CURSOR_PARAM: ["Invalid cursor."]},
    )


class _Order:
    """An ordering of JOB_ORDERING, always completed by -id (or id itself)."""

    def __init__(self, ordering: str) -> None:
        self.ordering = ordering
        self.field = ordering.lstrip("-")
        self.desc = ordering.startswith("-")
        self.by_id = self.field == "id"
        self.terms = [ordering] if self.by_id else [ordering, "-id"]

    def key(self, job: Job) -> list[Any]:
        value = getattr(job, self.field)
        if isinstance(value, datetime):
            value = value.isoformat()
        return [value, job.pk]

    def parse_value(self, value: Any) -> Any:
        if value is None or self.field in ("id", "priority", "status"):
            return value
        return datetime.fromisoformat(value)

    def after(self, key: list[Any], reverse: bool) -> Q:
        """Rows strictly after ``key`` in this order (before it if reverse).

        PostgreSQL puts NULLs last when ascending and first when descending,
        SQLite the other way round; only scheduled_at may be NULL.
        """
        value, pk = key
        field_desc = self.desc != reverse
        id_desc = (self.desc if self.by_id else True) != reverse
        past_id = Q(id__lt=pk) if id_desc else Q(id__gt=pk)
        if self.by_id:
            return past_id
        f = self.field
        nulls_last = field_desc != (connection.vendor == "postgresql")
        if value is None:
            same = Q(**{f"{f}__isnull": True}) & past_id
            return same if nulls_last else same | Q(**{f"{f}__isnull": False})
        past = Q(**{f"{f}__lt" if field_desc else f"{f}__gt": value})
        q = past | (Q(**{f: value}) & past_id)
        return q | Q(**{f"{f}__isnull": True}) if nulls_last else q


class BatchJobsPagination(ApiPagination):
    """Page numbers near either end, cursors everywhere; see the module doc."""

    def paginate_jobs(
        self,
        queryset: QuerySet[Job],
        request: Request,
        *,
        ordering: str,
        total: int,
        statuses: list[str],
    ) -> list[Job]:
        """The page of ``queryset`` (one batch's jobs, filtered, not yet
        ordered) that the request asks for. ``total`` is its size, from the
        kept counts; ``statuses`` the statuses it may hold."""
        self.request = request
        self.http: Request = request
        self.order = _Order(ordering)
        self.queryset = queryset
        self.statuses = statuses
        self.total = total
        self.size = self.get_page_size(request) or settings.API_PAGE_SIZE
        self.next_link: str | None = None
        self.previous_link: str | None = None
        raw_cursor = request.query_params.get(CURSOR_PARAM)
        if raw_cursor is not None:
            return self._by_cursor(raw_cursor)
        return self._by_page(request.query_params.get(self.page_query_param, 1))

    def get_paginated_response(self, data: Any) -> Response:
        return Response(
            {
                "count": self.total,
                "next": self.next_link,
                "previous": self.previous_link,
                "results": data,
            }
        )

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            *super().get_schema_operation_parameters(view),
            {
                "name": CURSOR_PARAM,
                "required": False,
                "in": "query",
                "description": "An opaque position taken from a `next` or "
                "`previous` link; page numbers reach API_MAX_PAGE_OFFSET rows "
                "from either end of the list, the links go everywhere.",
                "schema": {"type": "string"},
            },
        ]

    # --- page numbers -------------------------------------------------------

    def _by_page(self, raw: Any) -> list[Job]:
        pages = max(1, math.ceil(self.total / self.size))
        if raw in self.last_page_strings:
            number = pages
        else:
            try:
                number = int(raw)
            except (TypeError, ValueError):
                raise NotFound("Invalid page.") from None
        if number < 1 or number > pages:
            raise NotFound("Invalid page.")
        offset = (number - 1) * self.size
        if not self._reachable(offset):
            raise ApiError(
                f"Page {number} starts {offset:,} rows into this list, deeper "
                f"than page numbers reach (API_MAX_PAGE_OFFSET="
                f"{settings.API_MAX_PAGE_OFFSET:,} rows from either end). "
                "Follow the `next` and `previous` links, which turn into "
                "cursors at that depth.",
                code="page_too_deep",
                fields={self.page_query_param: ["Too deep; use the links."]},
            )
        end = min(offset + self.size, self.total)
        if offset <= settings.API_MAX_PAGE_OFFSET:
            rows = self._fetch(None, reverse=False, offset=offset, limit=end - offset)
        else:
            rows = self._fetch(
                None, reverse=True, offset=self.total - end, limit=end - offset
            )
            rows.reverse()
        url = self.http.build_absolute_uri()
        url = remove_query_param(url, CURSOR_PARAM)
        if number < pages and rows:
            if self._reachable(offset + self.size):
                self.next_link = replace_query_param(
                    url, self.page_query_param, number + 1
                )
            else:
                self.next_link = self._cursor_link(rows[-1], reverse=False)
        if number > 1:
            if self._reachable(offset - self.size):
                previous = (
                    remove_query_param(url, self.page_query_param)
                    if number == 2
                    else replace_query_param(url, self.page_query_param, number - 1)
                )
                self.previous_link = previous
            elif rows:
                self.previous_link = self._cursor_link(rows[0], reverse=True)
        return rows

    def _reachable(self, offset: int) -> bool:
        limit = settings.API_MAX_PAGE_OFFSET
        return offset <= limit or self.total - offset - self.size <= limit

    # --- cursors ------------------------------------------------------------

    def _by_cursor(self, raw: str) -> list[Job]:
        key, reverse = self._decode(raw)
        rows = self._fetch(key, reverse=reverse, offset=0, limit=self.size + 1)
        more = len(rows) > self.size
        rows = rows[: self.size]
        if reverse:
            rows.reverse()
        if rows:
            # Coming from one side, there is a row on that side.
            if more or reverse:
                self.next_link = self._cursor_link(rows[-1], reverse=False)
            if more or not reverse:
                self.previous_link = self._cursor_link(rows[0], reverse=True)
        return rows

    def _cursor_link(self, job: Job, *, reverse: bool) -> str:
        payload = {"o": self.order.ordering, "r": reverse, "k": self.order.key(job)}
        token = base64.urlsafe_b64encode(
            json.dumps(payload, separators=(",", ":")).encode()
        ).decode()
        url = remove_query_param(self.http.build_absolute_uri(), self.page_query_param)
        return replace_query_param(url, CURSOR_PARAM, token)

    def _decode(self, raw: str) -> tuple[list[Any], bool]:
        try:
            payload = json.loads(base64.urlsafe_b64decode(raw.encode()))
            key = payload["k"]
            reverse = payload["r"]
            if (
                payload["o"] != self.order.ordering
                or not isinstance(reverse, bool)
                or not isinstance(key, list)
                or len(key) != 2
                or isinstance(key[1], bool)
                or not isinstance(key[1], int)
            ):
                raise ValueError
            return [self.order.parse_value(key[0]), key[1]], reverse
        except (
            ValueError,
            TypeError,
            KeyError,
            binascii.Error,
            UnicodeDecodeError,
        ):
            raise _invalid_cursor() from None

    # --- reading ------------------------------------------------------------

    def _fetch(
        self, key: list[Any] | None, *, reverse: bool, offset: int, limit: int
    ) -> list[Job]:
        qs = self.queryset
        if key is not None:
            qs = qs.filter(self.order.after(key, reverse))
        terms = self.order.terms
        if reverse:
            terms = [t[1:] if t.startswith("-") else f"-{t}" for t in terms]
        if limit <= 0:
            return []
        if (
            not self.order.by_id
            or len(self.statuses) <= 1
            or connection.vendor != "postgresql"  # SQLite: no LIMIT per branch
        ):
            return list(qs.order_by(*terms)[offset : offset + limit])
        # By id over several statuses: one range of job_batch_status_idx per
        # status, each cut at offset + limit, merged; then the page's rows.
        # A plain ORDER BY id would read every entry of the batch (or walk
        # the primary key through every other batch's jobs).
        branches = [
            qs.filter(status=s).order_by(*terms).values_list("id", flat=True)[
                : offset + limit
            ]
            for s in self.statuses
        ]
        merged = branches[0].union(*branches[1:], all=True).order_by(*terms)
        page = merged[offset : offset + limit]
        return list(Job.objects.filter(pk__in=page).order_by(*terms))
