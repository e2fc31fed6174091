from __future__ import annotations

import os
import random
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from accounts.tests.factories import AccountFactory, MembershipFactory, UserFactory
from callcenter.actor import Actor, Source

# --- Seeded randomness ---------------------------------------------------------

SEED_PROPERTY = "random seed"


@pytest.fixture
def rng(request):
    """A random.Random for a test that draws (where a pause lands among
    claims, say). Seeded from TEST_SEED, or at random; a failure reports the
    seed, so the same draws can be made again."""
    seed = int(os.environ.get("TEST_SEED") or random.SystemRandom().randrange(2**32))
    request.node.user_properties.append((SEED_PROPERTY, seed))
    return random.Random(seed)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        for name, seed in item.user_properties:
            if name == SEED_PROPERTY:
                report.sections.append(
                    (SEED_PROPERTY, f"{seed} (run again with TEST_SEED={seed})")
                )
    return report


# --- The two databases ----------------------------------------------------------


def pytest_collection_modifyitems(config, items):
    """On SQLite (``make test``'s second run, DATABASE_URL=sqlite:///...),
    skip the tests marked ``postgres_only``: they need what only PostgreSQL
    has (SKIP LOCKED and row locks between threads, its clock, EXPLAIN, the
    pinned statement counts of its own SQL)."""
    from django.conf import settings

    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3":
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL (postgres_only)")
    for item in items:
        if item.get_closest_marker("postgres_only"):
            item.add_marker(skip)


# --- The hour of the day ----------------------------------------------------------
#
# A suite that passes at noon must pass at midnight. TEST_CLOCK=HH:MM (or
# --clock HH:MM) runs the whole session with Python's clock at that local time
# (TIME_ZONE, or HH:MM@Zone), ticking, on the nearest such instant to the real
# one, so dates stay close to the database's own clock (which no fake moves):
#
#   TEST_CLOCK=03:00 make test        TEST_CLOCK=15:00@America/New_York ...
#
# Worker subprocesses keep the real clock; a test's own time_machine.travel
# nests inside the session's.


def pytest_addoption(parser):
    parser.addoption(
        "--clock",
        default=os.environ.get("TEST_CLOCK", ""),
        help="run the session with the clock at this local time: HH:MM[@Zone]",
    )


def session_clock_target(spec: str, real: datetime) -> datetime:
    """The instant nearest to ``real`` whose local time is ``spec``."""
    from django.conf import settings

    hhmm, _, zone_name = spec.partition("@")
    zone = ZoneInfo(zone_name or settings.TIME_ZONE)
    hour, minute = (int(part) for part in hhmm.split(":"))
    local = real.astimezone(zone)
    candidates = [
        datetime.combine(local.date() + timedelta(days=d), time(hour, minute), zone)
        for d in (-1, 0, 1)
    ]
    return min(candidates, key=lambda c: abs(c - real))


@pytest.fixture(scope="session", autouse=True)
def _session_clock(request):
    spec = request.config.getoption("--clock")
    if not spec:
        yield None
        return
    import time_machine

    target = session_clock_target(spec, datetime.now(UTC))
    with time_machine.travel(target, tick=True):
        yield target


def pytest_report_header(config):
    spec = config.getoption("--clock")
    return [f"clock: {spec} local (TEST_CLOCK)"] if spec else []


@pytest.fixture
def account():
    return AccountFactory()


@pytest.fixture
def member(account):
    return MembershipFactory(account=account).user


@pytest.fixture
def api_actor(member):
    return Actor(source=Source.API, user=member, remote_addr="127.0.0.1")


@pytest.fixture
def system_actor():
    return Actor.system("tests")


@pytest.fixture
def staff_user():
    return UserFactory(username="staff", is_staff=True, is_superuser=True)


# --- REST API ---------------------------------------------------------------


def _token_client(user):
    from rest_framework.test import APIClient

    from accounts.tokens import api_token_create

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_create(user=user)}")
    client.user = user
    return client


@pytest.fixture
def api_client(member):
    """A member's token client. Clears the throttle's cache first."""
    from django.core.cache import cache

    cache.clear()
    return _token_client(member)


@pytest.fixture
def viewer_client(account):
    from accounts.models import Membership

    viewer = MembershipFactory(account=account, role=Membership.Role.VIEWER).user
    return _token_client(viewer)


@pytest.fixture
def other_client():
    """A member of another account."""
    return _token_client(MembershipFactory().user)


# --- Database route: PostgreSQL directly, or through PgBouncer ----------------


@pytest.fixture(
    params=["postgresql", pytest.param("pgbouncer", marks=pytest.mark.pgbouncer)]
)
def database_route(request, settings, monkeypatch):
    """Run the test once against PostgreSQL and once through PgBouncer in
    transaction mode, configured as docs/deploy.md says: prepared statements
    off, LISTEN straight to PostgreSQL. Every
    connection the test makes (its threads' too) and every worker subprocess
    it starts (from the connection's settings and the environment) goes
    through the pooler."""
    if request.param == "postgresql":
        yield None
        return
    from django.db import connection

    from callcenter.tests.servers import PgBouncer, Unavailable

    db = connection.settings_dict
    try:
        # One per test: stopping it closes its server connections, which
        # would otherwise stay in the test database (and keep it from being
        # dropped, and other tests' session counts from reaching zero).
        bouncer = PgBouncer(db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432))
    except Unavailable as exc:
        pytest.skip(f"PgBouncer unavailable: {exc}")
    saved = {key: db[key] for key in ("HOST", "PORT")}
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    direct = f"postgres://{auth}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    connection.close()
    # The dict every thread's connection is built from (ConnectionHandler).
    db.update(HOST="127.0.0.1", PORT=str(bouncer.port))
    settings.DATABASE_PREPARED_STATEMENTS = False
    settings.LISTEN_DATABASE_URL = direct
    monkeypatch.setenv("DATABASE_PREPARED_STATEMENTS", "false")
    monkeypatch.setenv("LISTEN_DATABASE_URL", direct)
    before = bouncer.transactions(db["NAME"])
    try:
        yield bouncer
        # The test's work really went through the pooler.
        assert bouncer.transactions(db["NAME"]) > before, bouncer.output
    finally:
        connection.close()
        db.update(saved)
        bouncer.stop()


# --- A private PostgreSQL cluster the test may restart or cut off -------------


@pytest.fixture
def private_database(request, settings):
    """A private cluster (callcenter/tests/servers.py) holding a copy of the
    test database; the test's connections go to it until the test ends.
    Indirect parametrization adds postgresql.conf settings. Yields the
    cluster. Skips, saying why, where initdb cannot run."""
    conf = getattr(request, "param", None)
    yield from _private_database(settings, listen="127.0.0.1", trusted=(), conf=conf)


def _private_database(settings, *, listen: str, trusted: tuple[str, ...], conf=None):
    from django.db import connection

    from callcenter.tests.servers import PrivateCluster, Unavailable

    try:
        cluster = PrivateCluster(listen=listen, trusted=trusted, conf=conf)
    except Unavailable as exc:
        pytest.skip(f"cannot start a private PostgreSQL cluster: {exc}")
    db = connection.settings_dict
    saved = {key: db[key] for key in ("HOST", "PORT")}
    try:
        cluster.copy_database(db, db["NAME"])
        connection.close()
        db.update(HOST="127.0.0.1", PORT=str(cluster.port))
        yield cluster
    finally:
        connection.close()
        db.update(saved)
        cluster.stop()


# --- A network namespace joined to the host by a veth pair ----------------------


@pytest.fixture
def netns():
    """A network namespace with a veth pair to the host (a /30 of its own).
    Its processes reach the host at ``netns.host_ip``; ``cut()`` takes the
    host end down (a partition), ``heal()`` brings it up. The namespace,
    its processes and the pair are removed even when the test fails. Skips,
    saying why, where namespaces cannot be created (not root, no ``ip``)."""
    from callcenter.tests.netns import NetNamespace, Unavailable

    try:
        namespace = NetNamespace()
    except Unavailable as exc:
        pytest.skip(f"cannot create a network namespace: {exc}")
    try:
        yield namespace
    finally:
        namespace.remove()


@pytest.fixture
def partitioned_database(netns, settings):
    """``private_database``, listening on loopback and on the host end of
    ``netns``'s veth pair, trusting the namespace's address."""
    yield from _private_database(
        settings,
        listen=f"127.0.0.1,{netns.host_ip}",
        trusted=(f"{netns.ns_ip}/32",),
    )
