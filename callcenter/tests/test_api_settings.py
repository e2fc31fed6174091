from __future__ import annotations

import pytest

from callcenter.tests.test_settings import LOAD, PROD_ENV, run_django


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("API_THROTTLE_RATE", "fast"),
        ("API_THROTTLE_RATE", "10/fortnight"),
        ("API_PAGE_SIZE", "0"),
        ("API_IMPORT_MAX_ROWS", "lots"),
        ("DEFAULT_PHONE_REGION", "XX"),
    ],
)
def test_api_settings__bad_value_names_the_variable(name, value):
    result = run_django(LOAD, {**PROD_ENV, name: value})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert name in result.stderr


def test_api_settings__env_overrides_defaults():
    env = {
        **PROD_ENV,
        "API_THROTTLE_RATE": "50/s",
        "DEFAULT_PHONE_REGION": "es",
        "API_PAGE_SIZE": "20",
    }
    result = run_django(
        "import django; django.setup(); from django.conf import settings as s;"
        "print(s.API_THROTTLE_RATE, s.DEFAULT_PHONE_REGION, s.API_PAGE_SIZE)",
        env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["50/s", "ES", "20"]
