"""The shared cache's backend: Django's database cache, with writes that do
not wait for the WAL flush.

The API throttle writes its count on every request. With a normal commit that
is one more disk sync per request, and the web's backends already spend most
of their waits on WAL flushes while workers claim (bench section "control":
IO:WALSync and LWLock:WALWrite). A cache entry is disposable (a throttle count
lost in a server crash costs nothing), so its write commits without waiting.
"""

from __future__ import annotations

from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.db import DatabaseCache as DjangoDatabaseCache
from django.db import connections, router, transaction


class DatabaseCache(DjangoDatabaseCache):
    def _base_set(
        self, mode: str, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT
    ) -> bool:
        alias = router.db_for_write(self.cache_model_class)
        connection = connections[alias]
        # Inside a caller's transaction the setting would also loosen the
        # caller's own commit: leave that one alone.
        if connection.vendor != "postgresql" or connection.in_atomic_block:
            return super()._base_set(mode, key, value, timeout)  # type: ignore[misc]
        with transaction.atomic(using=alias):
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit = off")
            # Not in django-stubs: the one method that every write goes through.
            return super()._base_set(mode, key, value, timeout)  # type: ignore[misc]
