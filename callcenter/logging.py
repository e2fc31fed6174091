"""A log formatter that appends the structured ``extra=`` fields of a record.

Code logs with ``logger.info("job claimed", extra={"action": ..., "job_id": ...})``
and operators get ``... job claimed action=claim job_id=42`` on one line.
"""

from __future__ import annotations

import logging

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
}


_PLAIN = (str, int, float, bool, list, tuple, dict)


class StructuredFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        # Only plain values: Django's own records carry sockets and requests.
        fields = {
            k: v
            for k, v in record.__dict__.items()
            if k not in _STANDARD and isinstance(v, _PLAIN)
        }
        if not fields:
            return base
        tail = " ".join(f"{k}={v}" for k, v in sorted(fields.items()))
        return f"{base} {tail}"
