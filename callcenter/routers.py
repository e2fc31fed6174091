"""The router of /api/v1/'s viewsets: every route in both slash forms."""

from __future__ import annotations

from rest_framework import routers


class OptionalSlashRouter(routers.SimpleRouter):
    """Every route with and without a trailing slash, as
    ``callcenter.api.both_slashes`` does for single views: the original
    system's curl examples have none, and a client that adds one must not
    get a redirect (a redirected POST or PATCH loses its body). Only the bare
    form is named, so ``reverse()`` and the schema give that one."""

    def __init__(self) -> None:
        super().__init__(trailing_slash=False)

    def get_urls(self) -> list:
        bare = super().get_urls()
        self.trailing_slash = "/"
        try:
            slashed = super().get_urls()
        finally:
            self.trailing_slash = ""
        for pattern in slashed:
            pattern.name = None  # type: ignore[union-attr]  # all URLPatterns
        return [*bare, *slashed]
