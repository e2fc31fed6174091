from __future__ import annotations

from webhooks.tests.server import receiver

__all__ = ["receiver"]
