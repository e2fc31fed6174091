"""`python -m callcenter.checkdb`: fail early, and clearly, when the test
database server cannot be reached."""

from __future__ import annotations

import sys

import django
import psycopg
from psycopg import sql


def main() -> int:
    django.setup()
    from django.conf import settings

    db = settings.DATABASES["default"]
    if "postgresql" not in db["ENGINE"]:
        print(f"Tests need PostgreSQL, but DATABASE_URL points at {db['ENGINE']}.")
        return 1
    try:
        conn = psycopg.connect(
            host=db.get("HOST") or None,
            port=db.get("PORT") or None,
            user=db.get("USER") or None,
            password=db.get("PASSWORD") or None,
            dbname="postgres",
            connect_timeout=5,
            autocommit=True,
        )
    except psycopg.OperationalError as exc:
        print(
            "Cannot reach PostgreSQL for the tests "
            f"({db.get('HOST') or 'socket'}:{db.get('PORT') or 5432}).\n"
            "Set DATABASE_URL, or start the local server, e.g.\n"
            "  pg_ctlcluster --skip-systemctl-redirect \\\n"
            "      $(ls /etc/postgresql) main start\n"
            f"Error: {exc}",
            file=sys.stderr,
        )
        return 1
    with conn:
        # pytest makes its own test_<name> database; creating <name> too lets
        # `makemigrations --check` look at a real migration history.
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]]
        ).fetchone()
        if not exists:
            conn.execute(
                sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db["NAME"]))
            )
            print(f"Created database {db['NAME']}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
