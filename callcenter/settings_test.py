"""Settings for the test suite: production settings plus test-only defaults.

Tests run against PostgreSQL: DATABASE_URL when set, otherwise the local
server. ``make test`` also runs the service and worker tests on SQLite
(DATABASE_URL=sqlite:///...), skipping those marked ``postgres_only``.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-not-secret")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/callcenter")
os.environ.setdefault("Q_SYNC", "true")
# One process; the tests that need the shared cache switch to the database one.
os.environ.setdefault("CACHE_BACKEND", "locmem")
# The hour of the day must not change what a test does: batches and
# one-off jobs get an all-day window unless a test sets one. The product
# default (08:00-21:00) is tested where windows are.
os.environ.setdefault("CALLING_WINDOW_DEFAULT", "00:00-24:00")
# Twilio's calls are not paced unless a test paces them (jobs/tests/
# test_pacing.py does, with the product's rules; the default is 1 a second).
os.environ.setdefault("TWILIO_CALLS_PER_SECOND", "0")

from callcenter.settings import *

SECURE_SSL_REDIRECT = False
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
ALLOWED_HOSTS = ["*"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Webhook tests deliver to a real HTTP server on 127.0.0.1.
WEBHOOKS_ALLOW_PRIVATE_NETWORKS = True
# Q_SYNC makes django-q2 warn on every task that it keeps the connection.
LOGGING["loggers"]["django-q"] = {"level": "ERROR"}  # type: ignore[index]

# Static files from the apps' directories, as in DEBUG: the suite does not run
# collectstatic (callcenter/tests/test_deploy.py does, for the production path).
STORAGES = {
    **STORAGES,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_AUTOREFRESH = True
WHITENOISE_USE_FINDERS = True

# SQLite: a test database in a file, next to DATABASE_URL's, as `make run` has
# (WAL, IMMEDIATE transactions), not Django's shared in-memory one, so that
# threads and subprocesses meet the same locking as the real thing.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    _name = Path(DATABASES["default"]["NAME"])
    DATABASES["default"]["TEST"] = {"NAME": str(_name.with_name(f"test_{_name.name}"))}
