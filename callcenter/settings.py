"""Settings for callcenter.

Everything that differs between deployments comes from the environment (see
the settings tables in docs/operations.md). Defaults are the production-safe ones:
DEBUG is off, a secret key is required, cookies are secure.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dj_database_url
import phonenumbers as _phonenumbers
from django.core.exceptions import ImproperlyConfigured

from callcenter.env import (
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_str,
)

# --- Django ------------------------------------------------------------------
BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DJANGO_DEBUG", False)

SECRET_KEY = env_str("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off"
        )
    SECRET_KEY = "django-insecure-development-only-key"

ALLOWED_HOSTS = env_list(
    "DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost"] if DEBUG else []
)
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "accounts",
    "batches",
    "jobs",
    "webhooks",
]
MIDDLEWARE = [
    # /healthz and /readyz, before the host check and the HTTPS redirect
    # (callcenter/health.py): a load balancer probes over plain HTTP.
    "callcenter.health.HealthCheckMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files from STATIC_ROOT, without Django's development server.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # JSON errors for /api/ paths that never reach DRF (unknown URL, crash).
    "callcenter.api.ApiErrorMiddleware",
    # Below it, so its process_exception runs first and only counts.
    "callcenter.metrics.DatabaseErrorMetricsMiddleware",
]

ROOT_URLCONF = "callcenter.urls"
WSGI_APPLICATION = "callcenter.wsgi.application"
ASGI_APPLICATION = "callcenter.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

_PV = "django.contrib.auth.password_validation"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": f"{_PV}.UserAttributeSimilarityValidator"},
    {"NAME": f"{_PV}.MinimumLengthValidator"},
    {"NAME": f"{_PV}.CommonPasswordValidator"},
    {"NAME": f"{_PV}.NumericPasswordValidator"},
]

LOGIN_URL = "admin:login"

# --- Security (production defaults; DEBUG relaxes only what it must) ---------
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = env_bool("DJANGO_SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("DJANGO_CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if env_bool("DJANGO_BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Languages, time zone and static files -----------------------------------
# English and Spanish (the original system's users write in Spanish). The
# language follows the browser's Accept-Language, or the admin's selector
# (a cookie); LANGUAGE_CODE is what a request that asks for neither gets.
LANGUAGES = [("en", "English"), ("es", "Español")]
LANGUAGE_CODE = env_choice("LANGUAGE_CODE", "en", frozenset(dict(LANGUAGES)))
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env_str("TIME_ZONE", "UTC")
try:
    ZoneInfo(TIME_ZONE)
except (ZoneInfoNotFoundError, ValueError):
    raise ImproperlyConfigured(
        f"TIME_ZONE must be an IANA time zone name, got {TIME_ZONE!r}"
    ) from None
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# `collectstatic` writes here, and WhiteNoise serves from here in production.
STATIC_ROOT = Path(env_str("DJANGO_STATIC_ROOT") or BASE_DIR / "static")
# Production: hashed file names (cached for a year by browsers) and
# precompressed copies, both made by `collectstatic`, which must run before
# the web process starts. DEBUG (`make run`): plain names from the apps'
# static directories, nothing to collect.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- Database -------------------------------------------------------------
# SQLite is the zero-setup default for `make run`; PostgreSQL is what the
# product is built for (SKIP LOCKED claims, LISTEN/NOTIFY) and what tests use.
DATABASE_URL = env_str("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}"
try:
    _db = dj_database_url.parse(
        DATABASE_URL,
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0),
        conn_health_checks=True,
    )
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not a valid URL: {exc}") from exc
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web process read while a worker writes; IMMEDIATE makes
    # every transaction take the write lock up front, so the conditional
    # UPDATE claim never meets a "database is locked" upgrade deadlock.
    _db["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    _db["CONN_MAX_AGE"] = 0
DATABASES = {"default": _db}
# The worker's LISTEN connection holds a session for as long as the worker
# runs, which a transaction-mode pooler cannot give: point this at
# PostgreSQL itself. Empty: the default database's connection settings.
LISTEN_DATABASE_URL = env_str("LISTEN_DATABASE_URL")
if LISTEN_DATABASE_URL:
    try:
        dj_database_url.parse(LISTEN_DATABASE_URL)
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"LISTEN_DATABASE_URL is not a valid URL: {exc}"
        ) from exc
# The worker's hot statements (claim, reservation, outcome record, settlement)
# run as server-side prepared statements, planned once per connection. Turn
# off behind a pooler that cannot keep prepared statements (PgBouncer in
# transaction mode before 1.21).
DATABASE_PREPARED_STATEMENTS = env_bool("DATABASE_PREPARED_STATEMENTS", True)
if not DATABASE_PREPARED_STATEMENTS and _db["ENGINE"].endswith("postgresql"):
    # psycopg's automatic preparation too (Django's default, made explicit).
    _db.setdefault("OPTIONS", {})["prepare_threshold"] = None

# --- Cache: shared by every process ------------------------------------------
# The API throttle and the admin login limit count in the cache, so with a
# per-process cache each web process (and host) would allow the full rate.
# The database cache needs no other service; `migrate` creates its table
# (accounts/apps.py). `locmem` counts per process: one process, or tests.
CACHE_BACKENDS: dict[str, dict[str, Any]] = {
    "database": {
        "BACKEND": "callcenter.cache.DatabaseCache",
        "LOCATION": "callcenter_cache",
    },
    "locmem": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
}
CACHE_BACKEND = env_str("CACHE_BACKEND").strip().lower() or "database"
if CACHE_BACKEND not in CACHE_BACKENDS:
    raise ImproperlyConfigured(
        f"CACHE_BACKEND must be one of {', '.join(CACHE_BACKENDS)}, "
        f"got {CACHE_BACKEND!r}"
    )
CACHES = {"default": CACHE_BACKENDS[CACHE_BACKEND]}

# Failed admin logins allowed per window: per username (from any address) and
# per client address (any username). 0 turns that limit off.
ADMIN_LOGIN_MAX_FAILURES = env_int("ADMIN_LOGIN_MAX_FAILURES", 5, minimum=0)
ADMIN_LOGIN_MAX_FAILURES_PER_IP = env_int(
    "ADMIN_LOGIN_MAX_FAILURES_PER_IP", 20, minimum=0
)
ADMIN_LOGIN_WINDOW_SECONDS = env_int("ADMIN_LOGIN_WINDOW_SECONDS", 900, minimum=1)

# --- Logging: one line per event with its structured fields (text or JSON) -
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
# text: one line, "key=value" fields appended; json: one JSON object a line.
LOG_FORMAT = env_choice("LOG_FORMAT", "text", frozenset({"text", "json"}))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"()": "callcenter.logging.StructuredFormatter"},
        "json": {"()": "callcenter.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT},
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "accounts": {"level": LOG_LEVEL},
        "batches": {"level": LOG_LEVEL},
        "jobs": {"level": LOG_LEVEL},
        "webhooks": {"level": LOG_LEVEL},
        "django": {"level": "INFO"},
    },
}

# --- REST API v1 (callcenter/urls.py, callcenter/api.py) ---------------------
REST_FRAMEWORK: dict[str, Any] = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Token first: its WWW-Authenticate header makes anonymous calls 401.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.tokens.HashedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["accounts.permissions.HasAccount"],
    "DEFAULT_THROTTLE_CLASSES": ["callcenter.api.ApiRateThrottle"],
    "DEFAULT_PAGINATION_CLASS": "callcenter.api.ApiPagination",
    "DEFAULT_PARSER_CLASSES": ["callcenter.api.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "EXCEPTION_HANDLER": "callcenter.api.exception_handler",
    "DEFAULT_METADATA_CLASS": "callcenter.api.ApiMetadata",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "callcenter API",
    "DESCRIPTION": "Outbound call campaigns: batches, jobs, pause and resume.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "PREPROCESSING_HOOKS": ["callcenter.api.drop_trailing_slash_duplicates"],
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI and Redoc served from our own static files, not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}
# Requests per token (e.g. 1000/min, 50/s, 20000/hour, 100000/day); empty
# disables throttling.
API_THROTTLE_RATE = env_str("API_THROTTLE_RATE", "1000/min").strip()
if API_THROTTLE_RATE and not re.fullmatch(
    r"[1-9][0-9]*/(s|sec|second|m|min|minute|h|hour|d|day)", API_THROTTLE_RATE
):
    raise ImproperlyConfigured(
        f"API_THROTTLE_RATE must look like 1000/min, got {API_THROTTLE_RATE!r}"
    )
API_PAGE_SIZE = env_int("API_PAGE_SIZE", 50, minimum=1)
API_MAX_PAGE_SIZE = env_int("API_MAX_PAGE_SIZE", 500, minimum=1)
# How deep (in rows, from either end) a ?page=N of a batch's job list may
# start; deeper pages are reached through the cursor links (jobs.pagination).
API_MAX_PAGE_OFFSET = env_int("API_MAX_PAGE_OFFSET", 10_000, minimum=0)
API_IMPORT_MAX_ROWS = env_int("API_IMPORT_MAX_ROWS", 200_000, minimum=1)
API_IDEMPOTENCY_TTL_HOURS = env_int("API_IDEMPOTENCY_TTL_HOURS", 24, minimum=1)
# Largest request body the API reads (CSV, multipart or JSON), in bytes:
# refused with 413 from its Content-Length before anything is read, and
# counted again while an upload is streamed to a temporary file.
IMPORT_MAX_BYTES = env_int("IMPORT_MAX_BYTES", 50 * 1024 * 1024, minimum=1024)

# --- Jobs and the call worker (run_call_worker) ------------------------------
JOB_LEASE_SECONDS = env_int("JOB_LEASE_SECONDS", 60, minimum=5)
JOB_DEFAULT_MAX_ATTEMPTS = env_int("JOB_DEFAULT_MAX_ATTEMPTS", 3, minimum=1)
# Bulk job sweeps (cancel, delete) commit in chunks of this size so that a
# million-job batch never holds one huge lock over other batches' claims.
JOB_SWEEP_CHUNK_SIZE = env_int("JOB_SWEEP_CHUNK_SIZE", 5000, minimum=1)
# Cancelling or deleting a batch with more jobs to sweep than this flips the
# batch at once and sweeps in the background (batches/operations.py): the API
# answers 202 with an operation.
SWEEP_INLINE_MAX_JOBS = env_int("SWEEP_INLINE_MAX_JOBS", 10_000, minimum=0)
WORKER_POLL_SECONDS = env_float("WORKER_POLL_SECONDS", 1.0, minimum=0.05)
# Threads that send an asynchronous dialer's requests (place a call, hang
# up); the calls themselves hold none while they run.
WORKER_PLACE_THREADS = env_int("WORKER_PLACE_THREADS", 4, minimum=1)
# How often a worker renews the leases of its calls (and so how soon it hears
# of a cancel); 0 means a quarter of JOB_LEASE_SECONDS, at most 5 s.
WORKER_RENEW_SECONDS = env_float("WORKER_RENEW_SECONDS", 0.0, minimum=0)
# A call that has not ended after this long is hung up.
WORKER_MAX_CALL_SECONDS = env_float("WORKER_MAX_CALL_SECONDS", 3600.0, minimum=1)
# Longest wait between reconnection attempts while the database is down.
WORKER_DB_BACKOFF_MAX_SECONDS = env_float(
    "WORKER_DB_BACKOFF_MAX_SECONDS", 10.0, minimum=0.1
)
# A worker lowers its own CPU priority by this much at start (Unix nice), so
# that on a saturated host the web process (a supervisor's pause) is served
# first; idle CPU is still the worker's. 0 keeps the priority it was given.
WORKER_NICE = env_int("WORKER_NICE", 10, minimum=0, maximum=19)

# --- Who may be called, and when (docs/calling-windows.md, docs/security.md) ---
# The calling window of batches created without one and of one-off jobs, in
# the recipient's local time, every day (jobs/rules/windows.py). The default
# is the federal TCPA hours; US state rules narrow it for US numbers.
CALLING_WINDOW_DEFAULT = env_str("CALLING_WINDOW_DEFAULT", "08:00-21:00")
if not re.fullmatch(r"\d\d:\d\d-\d\d:\d\d", CALLING_WINDOW_DEFAULT):
    raise ImproperlyConfigured(
        "CALLING_WINDOW_DEFAULT must be HH:MM-HH:MM (e.g. 08:00-21:00), got "
        f"{CALLING_WINDOW_DEFAULT!r}"
    )
# Region for phone numbers written without a +country code (ISO 3166 alpha-2).
DEFAULT_PHONE_REGION = env_str("DEFAULT_PHONE_REGION", "US").strip().upper()
if DEFAULT_PHONE_REGION not in _phonenumbers.SUPPORTED_REGIONS:
    raise ImproperlyConfigured(
        f"DEFAULT_PHONE_REGION must be a region code such as US or ES, "
        f"got {DEFAULT_PHONE_REGION!r}"
    )
# Destinations refused by default (an account with no allowed_countries list
# of its own may call every other country). ISO 3166 alpha-2 codes, and 001
# for the non-geographic codes (satellite, international networks, +979
# premium rate). See docs/security.md; accounts/dialing.py.
_HIGH_RISK_DEFAULT = (
    "001 CU SO SL GN GM LR ER KP NR TV TK NU CK SB VU KI WF ST SH IO FK PG TO WS FM MH"
)
DIAL_HIGH_RISK_COUNTRIES = frozenset(
    code.upper()
    for code in env_list("DIAL_HIGH_RISK_COUNTRIES", _HIGH_RISK_DEFAULT.split())
)
_unknown_regions = sorted(
    DIAL_HIGH_RISK_COUNTRIES - set(_phonenumbers.SUPPORTED_REGIONS) - {"001"}
)
if _unknown_regions:
    raise ImproperlyConfigured(
        "DIAL_HIGH_RISK_COUNTRIES must list region codes such as CU or 001, got "
        + ", ".join(_unknown_regions)
    )

# --- Dialers: simulated (the default) ----------------------------------------
CALL_DIALER = env_str("CALL_DIALER", "simulated")
SIMULATED_CALL_SECONDS = env_str("SIMULATED_CALL_SECONDS", "3")
SIMULATED_OUTCOMES = env_str(
    "SIMULATED_OUTCOMES", "answered=0.7,busy=0.1,no_answer=0.1,voicemail=0.1"
)
SIMULATED_SEED = env_str("SIMULATED_SEED")
# A path: simulated calls do not end before this file exists. Lets a test
# hold calls in progress for as long as it needs them, then release them.
SIMULATED_HOLD_FILE = env_str("SIMULATED_HOLD_FILE")
# A path: one JSON line per simulated call placed and ended (the dialer's own
# record, which the call-safety simulation checks).
SIMULATED_DIAL_LOG = env_str("SIMULATED_DIAL_LOG")
SIMULATED_OPT_OUT_NUMBERS = [
    n.strip() for n in env_str("SIMULATED_OPT_OUT_NUMBERS").split(",") if n.strip()
]
# Simulated calls end in the worker ("in_process") or through the same
# service a provider's status callback uses ("callback"; jobs/telephony.py).
SIMULATED_COMPLETION = env_choice(
    "SIMULATED_COMPLETION", "in_process", frozenset({"in_process", "callback"})
)

# --- Real calls: Twilio (docs/telephony.md) ---------------------------------
TWILIO_ACCOUNT_SID = env_str("TWILIO_ACCOUNT_SID")
TWILIO_AUTH_TOKEN = env_str("TWILIO_AUTH_TOKEN")
TWILIO_FROM_NUMBER = env_str("TWILIO_FROM_NUMBER")
TWILIO_API_BASE_URL = env_str("TWILIO_API_BASE_URL", "https://api.twilio.com")
TWILIO_CALL_URL = env_str("TWILIO_CALL_URL")
TWILIO_TWIML = env_str("TWILIO_TWIML")
TWILIO_MACHINE_DETECTION = env_choice(
    "TWILIO_MACHINE_DETECTION",
    "Enable",
    frozenset({"Enable", "DetectMessageEnd", "off"}),
)
TWILIO_RING_TIMEOUT_SECONDS = env_int("TWILIO_RING_TIMEOUT_SECONDS", 30, minimum=5)
TWILIO_TIME_LIMIT_SECONDS = env_int("TWILIO_TIME_LIMIT_SECONDS", 3600, minimum=1)
TWILIO_HTTP_TIMEOUT_SECONDS = env_float(
    "TWILIO_HTTP_TIMEOUT_SECONDS", 10.0, minimum=0.1
)
# Shared by every worker on every host, through the database (jobs/pacing.py).
TWILIO_CALLS_PER_SECOND = env_float("TWILIO_CALLS_PER_SECOND", 1.0, minimum=0.0)
TWILIO_MAX_CONCURRENT_CALLS = env_int("TWILIO_MAX_CONCURRENT_CALLS", 0, minimum=0)
# --- Real calls: a voice-agent platform over HTTP (docs/telephony.md) -------
HTTP_DIALER_URL = env_str("HTTP_DIALER_URL")
# whsec_… (Standard Webhooks). Several, separated by spaces, while a secret
# is rotated: requests are signed with each, callbacks accepted under any.
HTTP_DIALER_SECRET = env_str("HTTP_DIALER_SECRET")
HTTP_DIALER_CALLER_ID = env_str("HTTP_DIALER_CALLER_ID")
HTTP_DIALER_HANGUP_URL = env_str("HTTP_DIALER_HANGUP_URL")
HTTP_DIALER_TIMEOUT_SECONDS = env_float(
    "HTTP_DIALER_TIMEOUT_SECONDS", 10.0, minimum=0.1
)
HTTP_DIALER_ATTEMPTS = env_int("HTTP_DIALER_ATTEMPTS", 5, minimum=1, maximum=20)
HTTP_DIALER_TOLERANCE_SECONDS = env_int("HTTP_DIALER_TOLERANCE_SECONDS", 300, minimum=1)
HTTP_DIALER_MAX_CALL_SECONDS = env_int("HTTP_DIALER_MAX_CALL_SECONDS", 3600, minimum=1)
HTTP_DIALER_CALLS_PER_SECOND = env_float(
    "HTTP_DIALER_CALLS_PER_SECOND", 0.0, minimum=0.0
)
HTTP_DIALER_MAX_CONCURRENT_CALLS = env_int(
    "HTTP_DIALER_MAX_CONCURRENT_CALLS", 0, minimum=0
)
# Slots are (1 + this) / calls-per-second apart, so that a request this late
# for its slot still keeps every second within the rate (jobs/pacing.py).
DIALER_PACING_GUARD_SECONDS = env_float(
    "DIALER_PACING_GUARD_SECONDS", 0.1, minimum=0.0
)
# An attempt with no final status this long after the ring timeout plus the
# time limit is looked up at the provider by the reconciliation task.
CALL_RECONCILE_MARGIN_SECONDS = env_int("CALL_RECONCILE_MARGIN_SECONDS", 300, minimum=0)
# The origin providers call back (status callbacks); signatures are checked
# against URLs built from it, never from the request's Host header.
PUBLIC_BASE_URL = env_str("PUBLIC_BASE_URL").rstrip("/")
if PUBLIC_BASE_URL and not (
    PUBLIC_BASE_URL.startswith("https://")
    or (DEBUG and PUBLIC_BASE_URL.startswith("http://"))
):
    raise ImproperlyConfigured(
        "PUBLIC_BASE_URL must be an https:// origin (http:// only with DJANGO_DEBUG), "
        f"got {PUBLIC_BASE_URL!r}"
    )

# --- Credits (docs/credits.md) -----------------------------------------------
# What a call costs: a fixed part per call and a part per started minute.
# The per-minute part of the first CALL_RESERVE_MINUTES is reserved when the
# call starts and settled against the real duration when it ends.
CALL_COST_PER_CALL = env_int("CALL_COST_PER_CALL", 1, minimum=0)
CALL_COST_PER_STARTED_MINUTE = env_int("CALL_COST_PER_STARTED_MINUTE", 1, minimum=0)
CALL_RESERVE_MINUTES = env_int("CALL_RESERVE_MINUTES", 1, minimum=0)
# A call that runs past its reserved minutes has each further minute
# reserved shortly before it starts. When the balance cannot cover it, the
# worker hangs the call up ("hangup") or lets it run on, charged when it
# ends up to what is left ("continue").
CALL_OUT_OF_CREDITS = env_choice(
    "CALL_OUT_OF_CREDITS", "hangup", frozenset({"hangup", "continue"})
)

# --- Webhooks (docs/webhooks.md) ---------------------------------------------
WEBHOOKS_ALLOW_PRIVATE_NETWORKS = env_bool("WEBHOOKS_ALLOW_PRIVATE_NETWORKS", False)
# The total time one delivery attempt may take: connect, send and read
# together (not per socket read), so an endpoint that trickles its reply
# cannot hold a delivery worker longer than this.
WEBHOOK_TIMEOUT_SECONDS = env_float("WEBHOOK_TIMEOUT_SECONDS", 10.0, minimum=0.5)
if WEBHOOK_TIMEOUT_SECONDS > 30:
    raise ImproperlyConfigured(
        "WEBHOOK_TIMEOUT_SECONDS must be at most 30 (the delivery task's budget), "
        f"got {WEBHOOK_TIMEOUT_SECONDS}"
    )
WEBHOOK_MAX_ATTEMPTS = env_int("WEBHOOK_MAX_ATTEMPTS", 8, minimum=1)
# After a rotation the old secret signs beside the new one this long.
WEBHOOK_SECRET_ROTATION_GRACE_HOURS = env_int(
    "WEBHOOK_SECRET_ROTATION_GRACE_HOURS", 24, minimum=0, maximum=168
)
WEBHOOK_RETRY_BASE_SECONDS = env_int("WEBHOOK_RETRY_BASE_SECONDS", 30, minimum=1)
WEBHOOK_RETRY_MAX_SECONDS = env_int("WEBHOOK_RETRY_MAX_SECONDS", 6 * 3600, minimum=1)
# Each endpoint is one more request per event for the shared delivery workers.
WEBHOOK_MAX_ENDPOINTS_PER_ACCOUNT = env_int(
    "WEBHOOK_MAX_ENDPOINTS_PER_ACCOUNT", 10, minimum=1
)
# Finished jobs older than this many days are deleted by the retention task;

# --- Retention and kept counts -----------------------------------------------
# 0 (the default) keeps them forever.
JOB_RETENTION_DAYS = env_int("JOB_RETENTION_DAYS", 0, minimum=0)
# A deleted job's call record (who was called, when, outcome, cost) is kept
# this long after its last call; `purge_call_records` removes older ones.
# Five years: US TCPA claims can be brought for four.
CALL_RECORD_RETENTION_DAYS = env_int("CALL_RECORD_RETENTION_DAYS", 1825, minimum=1)
# How often the periodic task compares the kept per-batch job counts with
# COUNT(*) and repairs drift (a full read of jobs_job); 0 turns it off.
JOB_COUNTS_CHECK_MINUTES = env_int("JOB_COUNTS_CHECK_MINUTES", 60, minimum=0)
# How often each worker folds the count changes the triggers append into one
# row per batch and status (cheap; readers sum what is not folded yet); 0
# turns it off in the workers.
JOB_COUNTS_FOLD_SECONDS = env_float("JOB_COUNTS_FOLD_SECONDS", 1.0, minimum=0)

# --- django-q2: the ORM broker on the same database by default ----------------
# Two queues, each served by its own cluster, so that slow webhook endpoints
# can never take the workers that maintenance (lease recovery, reconciliation)
# needs: `qcluster` serves the default queue "callcenter" (maintenance), and
# `Q_CLUSTER_NAME=webhooks qcluster` the queue "webhooks" (deliveries). Both must run.
Q_WEBHOOKS_CLUSTER = "webhooks"
# Where the queues live: "orm" (a table in this database, acknowledged: a
# task taken by a node that dies is delivered again) or "redis" (REDIS_URL;
# not acknowledged: a task in flight on a node that dies is lost). Results
# and schedules stay in the database either way. See docs/operations.md
# for what each task does under either.
Q_BROKER = env_choice("Q_BROKER", "orm", frozenset({"orm", "redis"}))
REDIS_URL = env_str("REDIS_URL", "redis://localhost:6379/0")
if Q_BROKER == "redis" and not re.match(r"rediss?://|unix://", REDIS_URL):
    raise ImproperlyConfigured(
        f"REDIS_URL must be a redis://, rediss:// or unix:// URL, got {REDIS_URL!r}"
    )
_Q_BROKER_CONF: dict[str, Any] = (
    {"orm": "default"} if Q_BROKER == "orm" else {"redis": REDIS_URL}
)
Q_CLUSTER = {
    "name": "callcenter",
    **_Q_BROKER_CONF,
    "workers": env_int("Q_WORKERS", 2, minimum=1),
    "timeout": 60,
    "retry": 90,
    "max_attempts": 1,
    "catch_up": False,
    "sync": env_bool("Q_SYNC", False),
    "save_limit": 1000,
    "ALT_CLUSTERS": {
        Q_WEBHOOKS_CLUSTER: {
            "workers": env_int("Q_WEBHOOK_WORKERS", 2, minimum=1),
        },
    },
}

# --- Prometheus metrics (callcenter/metrics.py) -------------------------------
# /metrics answers a scraper that sends "Authorization: Bearer METRICS_TOKEN",
# or whose address is in METRICS_ALLOWED_IPS; with neither set it is off (404).
METRICS_TOKEN = env_str("METRICS_TOKEN")
METRICS_ALLOWED_IPS = env_list("METRICS_ALLOWED_IPS")
# Distinct values one label (batch, account) may take per process before
# further ones are counted as "other": keeps the series count bounded.
METRICS_MAX_LABEL_VALUES = env_int("METRICS_MAX_LABEL_VALUES", 200, minimum=1)
