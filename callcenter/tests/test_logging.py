from __future__ import annotations

import logging

from callcenter.logging import StructuredFormatter


def test_structured_formatter__appends_plain_extra_fields_only():
    record = logging.LogRecord(
        "jobs", logging.INFO, __file__, 1, "job claimed", (), None
    )
    record.action = "claim"
    record.job_id = 42
    record.request = object()  # Django's server log passes objects like this
    line = StructuredFormatter().format(record)
    assert line.endswith("job claimed action=claim job_id=42")
