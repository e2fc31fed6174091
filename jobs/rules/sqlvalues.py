"""Decoding the values the mark statement returns, whatever the backend."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any


def json_value(value: Any) -> Any:
    """A JSON column read by a raw cursor: text on some backends."""
    if isinstance(value, str | bytes):
        return json.loads(value)
    return value


def timestamp(value: Any) -> datetime | None:
    """A timestamp read by a raw cursor (SQLite returns text, in UTC)."""
    if value is None or isinstance(value, datetime):
        return value
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
