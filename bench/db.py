"""Bench databases and Django setup.

The bench owns two databases, dropped and recreated on every run: ours
(migrated by Django) and the peer one (Procrastinate's schema). Their names
must contain "bench", so that a misconfigured URL never drops real data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/callcenter_bench"


@dataclass(frozen=True)
class BenchDatabases:
    url: str
    peer_url: str

    @property
    def name(self) -> str:
        return _dbname(self.url)

    @property
    def peer_name(self) -> str:
        return _dbname(self.peer_url)


def _dbname(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def _with_db(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def resolve() -> BenchDatabases:
    """BENCH_DATABASE_URL, else DATABASE_URL's server with a "_bench" database,
    else the local server."""
    url = os.environ.get("BENCH_DATABASE_URL", "")
    base = os.environ.get("DATABASE_URL", "")
    if not url and base.startswith(("postgres://", "postgresql://")):
        name = _dbname(base)
        url = _with_db(base, name if "bench" in name else f"{name}_bench")
    url = url or DEFAULT_URL
    peer = os.environ.get(
        "BENCH_PEER_DATABASE_URL", _with_db(url, f"{_dbname(url)}_peer")
    )
    for u in (url, peer):
        if "bench" not in _dbname(u):
            raise SystemExit(
                f"refusing to use {u}: bench database names contain 'bench'"
            )
    return BenchDatabases(url=url, peer_url=peer)


def recreate(url: str) -> None:
    """Drop and create the database named in `url`."""
    name = _dbname(url)
    with psycopg.connect(_with_db(url, "postgres"), autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            [name],
        )
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def setup_django(url: str) -> None:
    """Configure Django with the production settings module on the bench database.

    Production settings, not the test ones: DEBUG off (no query log growing in
    memory), the real middleware and logging. Only what a loopback server
    needs is relaxed.
    """
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "callcenter.settings")
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-not-secret")
    os.environ.setdefault("DJANGO_DEBUG", "false")
    os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost")
    os.environ.setdefault("DJANGO_SECURE_SSL_REDIRECT", "false")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()


def server_facts(url: str) -> dict[str, object]:
    with psycopg.connect(url) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        settings = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)",
                [
                    [
                        "shared_buffers",
                        "synchronous_commit",
                        "max_connections",
                        "work_mem",
                    ]
                ],
            ).fetchall()
        )
    return {"postgresql": version, "settings": settings}
