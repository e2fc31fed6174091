"""The job list of a batch at any depth: page numbers near either end,
cursor links beyond, every job seen once in order, and the count taken from
the kept counts."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.utils import timezone

from batches.models import BatchJobCount
from batches.tests.factories import BatchFactory
from batches.tests.test_api_batches import assert_error
from jobs.counts import fold_job_counts
from jobs.models import Job, JobStatus

pytestmark = pytest.mark.django_db

STATUSES = [
    JobStatus.PENDING,
    JobStatus.COMPLETED,
    JobStatus.DONE,
    JobStatus.FAILED,
    JobStatus.CANCELLED,
]


@pytest.fixture
def batch(account, settings):
    settings.API_MAX_PAGE_OFFSET = 4
    batch = BatchFactory(account=account)
    now = timezone.now()
    Job.objects.bulk_create(
        Job(
            account=account,
            batch=batch,
            phone_number=f"+1415555{i:04d}",
            status=STATUSES[i % len(STATUSES)],
            priority=i % 3,
            # Some NULLs among the values: they sort last ascending.
            scheduled_at=None if i % 4 == 0 else now + timedelta(minutes=i % 5),
        )
        for i in range(23)
    )
    return batch


def url(batch) -> str:
    return f"/api/v1/batches/{batch.batch_id}/jobs"


def path_of(link: str) -> str:
    parts = urlsplit(link)
    return f"{parts.path}?{parts.query}"


def walk(
    api_client, first: str, direction: str, count: int = 23
) -> tuple[list[int], list[str]]:
    ids: list[int] = []
    links: list[str] = []
    link: str | None = first
    while link:
        body = api_client.get(link).json()
        assert body["count"] == count
        ids.extend(j["id"] for j in body["results"])
        link = body[direction] and path_of(body[direction])
        if link:
            links.append(link)
    return ids, links


@pytest.mark.parametrize(
    "ordering", ["-id", "id", "priority", "-priority", "scheduled_at", "-scheduled_at"]
)
def test_batch_jobs_list__links_walk_every_job_once_in_order(
    api_client, batch, ordering
):
    expected = list(
        Job.objects.filter(batch=batch)
        .order_by(*([ordering] if ordering.endswith("id") else [ordering, "-id"]))
        .values_list("id", flat=True)
    )
    first = f"{url(batch)}?ordering={ordering}&page_size=3"
    forward, links = walk(api_client, first, "next")
    assert forward == expected
    # Page numbers near the ends, cursors in the middle.
    kinds = ["cursor" if "cursor=" in link else "page" for link in links]
    assert "cursor" in kinds
    assert kinds[0] == "page"

    last = f"{url(batch)}?ordering={ordering}&page_size=3&page=last"
    backward, links = walk(api_client, last, "previous")
    # walk() reads each page in order; pages come last to first.
    pages = [expected[i : i + 3] for i in range(0, 23, 3)]
    assert backward == [job for page in reversed(pages) for job in page]
    assert any("cursor=" in link for link in links)


def test_batch_jobs_list__a_page_deep_in_the_middle_is_refused(api_client, batch):
    ok = api_client.get(url(batch), {"page_size": 2, "page": 3})  # offset 4
    assert ok.status_code == 200
    error = assert_error(
        api_client.get(url(batch), {"page_size": 2, "page": 5}), 400, "page_too_deep"
    )
    assert "page" in error["fields"]
    # The same depth from the other end is served, read from that end.
    tail = api_client.get(url(batch), {"page_size": 2, "page": 10}).json()
    expected = list(
        Job.objects.filter(batch=batch).order_by("-id").values_list("id", flat=True)
    )
    assert [j["id"] for j in tail["results"]] == expected[18:20]
    assert api_client.get(url(batch), {"page": 99}).status_code == 404


def test_batch_jobs_list__status_filter_pages_within_the_status(api_client, batch):
    done = list(
        Job.objects.filter(batch=batch, status__in=["completed", "done"])
        .order_by("-id")
        .values_list("id", flat=True)
    )
    first = f"{url(batch)}?status=completed&page_size=2"
    ids, _ = walk(api_client, first, "next", count=len(done))
    assert ids == done


@pytest.mark.parametrize(
    "cursor",
    ["nonsense", "eyJvIjoiaWQifQ==", "eyJvIjoiLWlkIiwiciI6MSwiayI6WzEsMl19"],
)
def test_batch_jobs_list__a_bad_cursor_is_400(api_client, batch, cursor):
    error = assert_error(api_client.get(url(batch), {"cursor": cursor}), 400)
    assert "cursor" in error["fields"]


def test_batch_jobs_list__count_is_the_kept_count(api_client, batch):
    # A drift made by hand shows through: the list does not count its rows.
    fold_job_counts()
    BatchJobCount.objects.filter(batch_id=batch.pk, status="open").update(n=1000)
    body = api_client.get(url(batch)).json()
    # pending and in_progress are kept together, as "open".
    assert body["count"] == 1000 + Job.objects.filter(batch=batch).exclude(
        status__in=["pending", "in_progress"]
    ).count()
