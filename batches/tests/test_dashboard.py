from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client
from django.urls import reverse

from accounts.tests.factories import UserFactory
from batches import services
from batches.dashboard import dashboard_data
from batches.tests.factories import BatchFactory
from jobs.models import JobStatus
from jobs.tests.factories import JobFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2025, 10, 25, 14, 41, 29, tzinfo=UTC)
DASHBOARD = reverse("dashboard")
DATA = reverse("dashboard-data")


def call(batch, *, worker, finished_ago, status=JobStatus.COMPLETED):
    end = NOW - finished_ago
    return JobFactory(
        batch=batch,
        status=status,
        claimed_by=worker,
        claimed_at=end - timedelta(seconds=20),
        started_at=end - timedelta(seconds=15),
        finished_at=end,
    )


@pytest.mark.parametrize("url", [DASHBOARD, DATA])
def test_dashboard__requires_a_staff_login(client, url):
    anonymous = client.get(url)
    member = Client()
    member.force_login(UserFactory(username="member", is_staff=False))

    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith(reverse("admin:login"))
    assert member.get(url).status_code == 302


@pytest.mark.parametrize("url", [DASHBOARD, DATA])
def test_dashboard__requires_the_view_batch_permission(url):
    from django.contrib.auth.models import Permission

    staff = UserFactory(username="clerk", is_staff=True)
    client = Client()
    client.force_login(staff)
    assert client.get(url).status_code == 403

    staff.user_permissions.add(Permission.objects.get(codename="view_batch"))
    assert client.get(url).status_code == 200


def test_dashboard__renders_for_staff_with_embedded_data(admin_client):
    BatchFactory(name="Renewals")

    response = admin_client.get(DASHBOARD)

    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="cc-dashboard-data"' in html
    assert "batches/dashboard.js" in html
    assert f'data-url="{DATA}"' in html
    assert "Renewals" in html  # inside the embedded JSON
    assert "no-cache" in response["Cache-Control"]


def test_dashboard_data__batches_calls_workers_and_chart(system_actor):
    active = BatchFactory(name="Renewals", priority=5)
    paused = BatchFactory(name="Survey")
    services.batch_pause(batch=paused, actor=system_actor, reason="wrong script")
    services.batch_cancel(batch=BatchFactory(name="Cancelled"), actor=system_actor)
    JobFactory.create_batch(2, batch=active)
    JobFactory(
        batch=active,
        status=JobStatus.IN_PROGRESS,
        claimed_by="w-live",
        claimed_at=NOW - timedelta(seconds=5),
        lease_expires_at=NOW + timedelta(seconds=55),
    )
    # A worker whose lease ran out is not "seen".
    JobFactory(
        batch=paused,
        status=JobStatus.IN_PROGRESS,
        claimed_by="w-dead",
        claimed_at=NOW - timedelta(minutes=5),
        lease_expires_at=NOW - timedelta(minutes=4),
    )
    call(active, worker="w-recent", finished_ago=timedelta(seconds=30))
    call(active, worker="w-recent", finished_ago=timedelta(seconds=31))
    call(active, worker="w-old", finished_ago=timedelta(minutes=10))
    call(active, worker="w-ancient", finished_ago=timedelta(hours=2))
    # Cancelled before it was ever dialled: not a call.
    JobFactory(batch=paused, status=JobStatus.CANCELLED, finished_at=NOW)

    with time_machine.travel(NOW, tick=False):
        data = dashboard_data()

    assert [b["name"] for b in data["batches"]] == ["Renewals", "Survey"]
    renewals, survey = data["batches"]
    assert renewals["state"] == "active"
    assert (renewals["total"], renewals["finished"], renewals["in_progress"]) == (
        7,
        4,
        1,
    )
    assert survey["state"] == "paused"
    assert survey["pause_reason"] == "wrong script"
    assert data["calls_in_progress"] == 2
    assert [w["worker_id"] for w in data["workers"]] == ["w-live", "w-recent"]
    assert data["workers_count"] == 2
    chart = data["calls_per_minute"]
    assert len(chart) == 60
    assert chart[-1]["minute"] == NOW.replace(second=0)
    assert chart[-1]["calls"] == 0  # 14:41
    assert chart[-2]["calls"] == 2  # 14:40:58 and 14:40:59
    assert chart[-11]["calls"] == 1  # 14:31:29
    assert data["calls_last_hour"] == 3
    assert (data["active_batches"], data["paused_batches"]) == (1, 1)


def test_dashboard_data_view__returns_json(admin_client):
    BatchFactory(name="Renewals")
    response = admin_client.get(DATA)
    assert response["Content-Type"] == "application/json"
    payload = json.loads(response.content)
    assert payload["batches"][0]["name"] == "Renewals"
    assert payload["batches"][0]["url"].startswith("/admin/batches/batch/")


def test_dashboard_data_view__query_count_is_fixed(
    admin_client, django_assert_num_queries
):
    for _ in range(3):
        JobFactory.create_batch(2, batch=BatchFactory())
    # session, user, batches, status counts, rates, workers, chart, in progress
    with django_assert_num_queries(8):
        admin_client.get(DATA)
    for _ in range(20):
        JobFactory(batch=BatchFactory())
    with django_assert_num_queries(8):
        admin_client.get(DATA)


def test_dashboard_data__rate_and_eta_per_batch(system_actor):
    active = BatchFactory(name="Renewals")
    paused = BatchFactory(name="Survey")
    JobFactory.create_batch(3, batch=active)  # left to call
    JobFactory(batch=paused)
    for minutes in (5, 20, 50):  # three finished in the last hour
        call(active, worker="w", finished_ago=timedelta(minutes=minutes))
    call(active, worker="w", finished_ago=timedelta(hours=3))  # not in the rate
    call(paused, worker="w", finished_ago=timedelta(minutes=1))
    services.batch_pause(batch=paused, actor=system_actor)

    with time_machine.travel(NOW, tick=False):
        renewals, survey = dashboard_data()["batches"]

    assert renewals["rate_per_hour"] == 3
    # 3 left at 3 per hour: an hour from now.
    assert renewals["eta"]["at"] == NOW + timedelta(hours=1)
    assert survey["rate_per_hour"] == 1
    assert survey["eta"] == {"at": None, "seconds": None, "why_not": "paused"}


def test_dashboard_pause__pauses_audited_and_says_how_many_finish(admin_client):
    batch = BatchFactory(name="Renewals")
    JobFactory.create_batch(2, batch=batch, status=JobStatus.IN_PROGRESS)
    JobFactory(batch=batch)

    response = admin_client.post(reverse("dashboard-pause", args=[batch.pk]))

    assert response.status_code == 200
    body = response.json()
    assert body["changed"] is True
    assert body["in_progress"] == 2
    assert body["message"] == ("Paused: no new calls; 2 calls in progress finishing.")
    batch.refresh_from_db()
    assert batch.is_active is False
    event = batch.events.get(action="paused")
    assert (event.source, event.actor_label) == ("admin", "admin")
    again = admin_client.post(reverse("dashboard-pause", args=[batch.pk])).json()
    assert again["changed"] is False


def test_dashboard_pause__post_only_and_needs_change_permission(admin_client):
    from django.contrib.auth.models import Permission

    batch = BatchFactory()
    url = reverse("dashboard-pause", args=[batch.pk])
    viewer = UserFactory(username="viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_batch"))
    client = Client()
    client.force_login(viewer)

    assert admin_client.get(url).status_code == 405
    assert client.post(url).status_code == 403
    assert 'data-can-pause="false"' in client.get(DASHBOARD).content.decode()
    batch.refresh_from_db()
    assert batch.is_active is True


def test_dashboard_pause__a_cancelled_batch_stays_as_it_is(admin_client, system_actor):
    batch = BatchFactory()
    services.batch_cancel(batch=batch, actor=system_actor)

    response = admin_client.post(reverse("dashboard-pause", args=[batch.pk]))

    assert response.status_code == 200
    assert response.json()["changed"] is False
    assert not batch.events.filter(action="paused").exists()
