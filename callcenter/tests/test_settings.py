from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROD_ENV = {
    "DJANGO_SECRET_KEY": "a-long-random-production-secret-" + "x" * 40,
    "DJANGO_ALLOWED_HOSTS": "calls.example.com",
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres",
}


def run_django(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "DATABASE_URL", "TIME_ZONE", "JOB_"))
    }
    clean.update(env)
    clean["DJANGO_SETTINGS_MODULE"] = "callcenter.settings"
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


LOAD = "import django; django.setup(); from django.conf import settings; print('ok')"


def test_settings__production_defaults_are_secure():
    result = run_django(
        "import django; django.setup(); from django.conf import settings as s;"
        "print(s.DEBUG, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE,"
        " s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS > 0)",
        PROD_ENV,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True", "True", "True", "True"]


def test_settings__secret_key_required_without_debug():
    env = {k: v for k, v in PROD_ENV.items() if k != "DJANGO_SECRET_KEY"}
    result = run_django(LOAD, env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "DJANGO_SECRET_KEY" in result.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DJANGO_DEBUG", "maybe"),
        ("TIME_ZONE", "Mars/Olympus"),
        ("JOB_LEASE_SECONDS", "soon"),
        ("JOB_LEASE_SECONDS", "1"),
        ("DATABASE_URL", "nosuchdb://x"),
        ("WORKER_NICE", "20"),
        ("WORKER_NICE", "-5"),
        ("CACHE_BACKEND", "memcached"),
        ("CALL_OUT_OF_CREDITS", "shrug"),
        ("LISTEN_DATABASE_URL", "nosuchdb://x"),
        ("Q_BROKER", "rabbitmq"),
    ],
)
def test_settings__bad_value_names_the_variable(name, value):
    result = run_django(LOAD, {**PROD_ENV, name: value})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert name in result.stderr


@pytest.mark.parametrize(("value", "threshold"), [("true", "unset"), ("false", "None")])
def test_settings__prepared_statements_off_turns_psycopg_preparation_off(
    value, threshold
):
    result = run_django(
        "import django; django.setup(); from django.conf import settings as s;"
        "print(s.DATABASES['default'].get('OPTIONS', {}).get("
        "'prepare_threshold', 'unset'))",
        {**PROD_ENV, "DATABASE_PREPARED_STATEMENTS": value},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [threshold]


def test_settings__q_broker_redis_puts_the_queues_on_redis_url():
    result = run_django(
        "import django; django.setup(); from django_q.conf import Conf;"
        "print(Conf.ORM, Conf.REDIS)",
        {**PROD_ENV, "Q_BROKER": "redis", "REDIS_URL": "redis://q.internal:6380/2"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["None", "redis://q.internal:6380/2"]
    bad = run_django(LOAD, {**PROD_ENV, "Q_BROKER": "redis", "REDIS_URL": "q:6379"})
    assert "ImproperlyConfigured" in bad.stderr
    assert "REDIS_URL" in bad.stderr


def test_settings__check_deploy_is_clean():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={
            **{
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("DJANGO_", "DATABASE_URL"))
            },
            **PROD_ENV,
            "DJANGO_SETTINGS_MODULE": "callcenter.settings",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
