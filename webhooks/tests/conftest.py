from __future__ import annotations

from webhooks.tests.server import local_ca, receiver

__all__ = ["local_ca", "receiver"]
