"""The shared cache: what one process counts, another sees."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading

import pytest
from django.conf import settings
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from accounts.tests.factories import MembershipFactory
from callcenter.tests.test_settings import PROD_ENV, run_django

SUBPROCESS_REQUESTS = """
import django, json
django.setup()
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient
client = APIClient()
client.force_authenticate(get_user_model().objects.get(pk={user_pk}))
print(json.dumps([client.get("/api/v1/batches").status_code for _ in range(3)]))
"""


def database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@pytest.fixture
def database_cache(settings):
    settings.CACHES = {"default": settings.CACHE_BACKENDS["database"]}
    call_command("createcachetable", verbosity=0)
    cache.clear()
    yield
    cache.clear()


@pytest.mark.django_db(transaction=True)
def test_api_throttle__holds_across_processes(database_cache, settings):
    settings.API_THROTTLE_RATE = "3/min"
    member = MembershipFactory().user
    other_process = subprocess.run(
        [sys.executable, "-c", SUBPROCESS_REQUESTS.format(user_pk=member.pk)],
        cwd=settings.BASE_DIR,
        env={
            **os.environ,
            "DATABASE_URL": database_url(),
            "DJANGO_SETTINGS_MODULE": "callcenter.settings_test",
            "CACHE_BACKEND": "database",
            "API_THROTTLE_RATE": "3/min",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert other_process.returncode == 0, other_process.stderr
    assert other_process.stdout.split() == ["[200,", "200,", "200]"]

    client = APIClient()
    client.force_authenticate(member)
    response = client.get("/api/v1/batches")

    assert response.status_code == 429, response.content
    assert response.json()["error"]["code"] == "throttled"


def test_settings__the_database_cache_is_the_default():
    result = run_django(
        "import django; django.setup(); from django.conf import settings as s;"
        "print(s.CACHES['default']['BACKEND'])",
        {**PROD_ENV, "CACHE_BACKEND": ""},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "callcenter.cache.DatabaseCache"


@pytest.mark.slow
def test_migrate__creates_the_cache_table(tmp_path):
    db_file = tmp_path / "db.sqlite3"
    env = {k: v for k, v in os.environ.items() if k != "CACHE_BACKEND"}
    done = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=settings.BASE_DIR,
        env={
            **env,
            "DATABASE_URL": f"sqlite:///{db_file}",
            "DJANGO_SETTINGS_MODULE": "callcenter.settings",
            "DJANGO_DEBUG": "true",
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    with sqlite3.connect(db_file) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert "callcenter_cache" in tables


@pytest.mark.django_db(transaction=True)
def test_database_cache__writes_commit_without_waiting_for_the_flush(database_cache):
    with CaptureQueriesContext(connection) as queries:
        cache.set("throttle-count", 3)

    assert "SET LOCAL synchronous_commit = off" in sent(queries)
    seen: list[object] = []
    other = threading.Thread(
        target=lambda: seen.append(read_elsewhere("throttle-count"))
    )
    other.start()
    other.join(30)
    assert seen == [3]  # committed, not left in an open transaction


@pytest.mark.django_db(transaction=True)
def test_database_cache__leaves_a_callers_transaction_alone(database_cache):
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        cache.set("inside", 1)
    assert not [sql for sql in sent(queries) if "synchronous_commit" in sql]
    assert cache.get("inside") == 1


def sent(queries) -> list[str]:
    return [query["sql"] for query in queries.captured_queries]


def read_elsewhere(key: str) -> object:
    try:
        return cache.get(key)
    finally:
        connections.close_all()
