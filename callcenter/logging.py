"""Log formatters that carry the structured ``extra=`` fields of a record.

Code logs with ``logger.info("job claimed", extra={"action": ..., "job_id": ...})``
and operators get ``... job claimed action=claim job_id=42`` on one line
(``LOG_FORMAT=text``, the default), or with ``LOG_FORMAT=json`` one JSON object
per line: ``{"time": ..., "level": "INFO", "logger": "jobs", "message": "job
claimed", "action": "claim", "job_id": 42}``.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
}


_PLAIN = (str, int, float, bool, list, tuple, dict, type(None))


def _fields(record: logging.LogRecord) -> dict[str, object]:
    # Only plain values: Django's own records carry sockets and requests.
    return {
        k: v
        for k, v in record.__dict__.items()
        if k not in _STANDARD and isinstance(v, _PLAIN)
    }


class StructuredFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        fields = _fields(record)
        if not fields:
            return base
        tail = " ".join(f"{k}={v}" for k, v in sorted(fields.items()))
        return f"{base} {tail}"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (``LOG_FORMAT=json``).

    The record's own keys (time, level, logger, message, and exc_info when
    there is a traceback) come first; the ``extra=`` fields follow, and never
    overwrite them. A value JSON cannot encode is written as its ``str``.
    """

    _OWN = ("time", "level", "logger", "message", "exc_info")

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        for key, value in _fields(record).items():
            if key not in self._OWN:
                entry[key] = value
        return json.dumps(entry, default=str, ensure_ascii=False)
