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


def test_json_formatter__one_object_per_line_with_the_extra_fields():
    import json

    from callcenter.logging import JsonFormatter

    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "jobs", logging.WARNING, __file__, 1, "job %s\nclaimed", (42,), exc_info
    )
    record.action = "claim"
    record.job_ids = [1, 2]
    record.message_count = 3
    record.level = "spoofed"  # an extra field never overwrites the record's own
    record.request = object()
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "job 42\nclaimed"
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "jobs"
    assert entry["action"] == "claim"
    assert entry["job_ids"] == [1, 2]
    assert "request" not in entry
    assert "ValueError: boom" in entry["exc_info"]
    assert entry["time"].endswith("+00:00")


def test_log_format__an_unknown_value_is_refused_naming_the_setting():
    from callcenter.tests.test_settings import LOAD, PROD_ENV, run_django

    result = run_django(LOAD, {**PROD_ENV, "LOG_FORMAT": "xml"})
    assert result.returncode != 0
    assert "LOG_FORMAT must be one of json, text, got 'xml'" in result.stderr
