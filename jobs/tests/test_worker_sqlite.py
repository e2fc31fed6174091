"""The zero-setup path: `make run` uses SQLite, where the claim is a
conditional UPDATE instead of SKIP LOCKED. Two real workers drain the demo
data without taking a paused batch's jobs or calling anyone twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.conf import settings

pytestmark = pytest.mark.slow

REPORT = """
import json
from jobs.models import Job
print(json.dumps([
    [j.batch.is_active, j.status, j.attempts, len(j.attempt_log)]
    for j in Job.objects.select_related("batch")
]))
"""


def manage(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_run_call_worker__two_workers_on_sqlite_drain_active_batches_once(tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "DJANGO_SETTINGS_MODULE": "callcenter.settings",
        "DJANGO_SECRET_KEY": "test-only",
        "DJANGO_DEBUG": "true",
        "SIMULATED_CALL_SECONDS": "0.01-0.05",
        "SIMULATED_OUTCOMES": "answered=1",
        "LOG_LEVEL": "WARNING",
    }
    manage(env, "migrate", "--noinput", "-v0")
    manage(env, "seed_demo")

    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "run_call_worker",
                "--burst",
                "--concurrency=3",
                f"--worker-id=w{i}",
            ],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err

    jobs = json.loads(manage(env, "shell", "-c", REPORT).strip().splitlines()[-1])
    active = [j for j in jobs if j[0]]
    paused = [j for j in jobs if not j[0]]
    assert active
    assert paused
    assert all(status == "completed" for _, status, _, _ in active)
    assert all(attempts == 1 == logged for _, _, attempts, logged in active)
    assert all(status == "pending" for _, status, _, _ in paused)
