"""django-q2 on either broker, for tests: the ``q_broker`` fixture switches
this process's django-q2 to the ORM or the Redis broker, and
``start_qcluster`` starts a real ``manage.py qcluster`` on the same one."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django_q.brokers import get_broker
from django_q.conf import Conf

# A database of its own on the local Redis, emptied before and after a test.
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://localhost:6379/15")
QUEUES = (Conf.PREFIX, settings.Q_WEBHOOKS_CLUSTER)


def _purge() -> None:
    for queue in QUEUES:
        get_broker(queue).purge_queue()


@pytest.fixture(params=["orm", "redis"])
def q_broker(request, monkeypatch) -> Iterator[dict[str, str]]:
    """The broker under test; returns the environment a ``qcluster`` needs
    to use it. Tasks are queued, as in production (not Q_SYNC)."""
    monkeypatch.setattr(Conf, "SYNC", False)
    if request.param == "redis":
        import redis

        try:
            redis.from_url(TEST_REDIS_URL).ping()
        except redis.RedisError as exc:
            pytest.skip(f"Redis unavailable at {TEST_REDIS_URL}: {exc}")
        monkeypatch.setattr(Conf, "ORM", None)
        monkeypatch.setattr(Conf, "REDIS", TEST_REDIS_URL)
        env = {"Q_BROKER": "redis", "REDIS_URL": TEST_REDIS_URL}
    else:
        env = {"Q_BROKER": "orm"}
    _purge()
    yield env
    _purge()


def start_qcluster(
    log: Path, settings_module: str = "callcenter.settings_test", **env: str
) -> subprocess.Popen:
    """``manage.py qcluster`` against the test database, output to ``log``."""
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=settings.BASE_DIR,
        env={
            **os.environ,
            "DATABASE_URL": f"postgres://{auth}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "DJANGO_SETTINGS_MODULE": settings_module,
            "Q_SYNC": "false",
            "PYTHONUNBUFFERED": "1",
            **env,
        },
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
