from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core.management import call_command
from django.db import DEFAULT_DB_ALIAS
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


def create_cache_tables(using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    """``migrate`` creates the database cache's table, so that a deployment,
    ``make run`` and a test database never lack it. ``createcachetable`` skips
    tables that exist and caches that are not database caches."""
    call_command("createcachetable", database=using, verbosity=0)


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = _("Accounts")

    def ready(self) -> None:
        # The shared cache holds the API throttle and the admin login limit,
        # which are about users: the accounts app owns it.
        post_migrate.connect(create_cache_tables, sender=self)
