"""The OpenAPI schema, and a schemathesis run against it.

schemathesis generates requests for every operation in the live schema (over
WSGI, authenticated with a member's token) and checks that none answers 500
and that every response matches the schema: status code, content type and
body. Path parameters point at a real batch and job of the caller's account,
so the handlers behind the 404 are exercised too.
"""

from __future__ import annotations

import json

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from accounts.tokens import api_token_create
from batches.tests.factories import BatchFactory
from jobs.models import JobStatus
from jobs.tests.factories import JobFactory

pytestmark = pytest.mark.django_db


def test_schema__served_and_documents_every_endpoint(client):
    response = client.get("/api/v1/schema", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    operations = {
        (method.upper(), path)
        for path, item in schema["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    }
    b = "/api/v1/batches/{batch_id}"
    assert operations == {
        ("GET", "/api/v1/batches"),
        ("POST", "/api/v1/batches"),
        ("GET", b),
        ("PATCH", b),
        ("DELETE", b),
        ("PUT", f"{b}/pause"),
        ("POST", f"{b}/pause"),
        ("PUT", f"{b}/resume"),
        ("POST", f"{b}/resume"),
        ("POST", f"{b}/cancel"),
        ("GET", f"{b}/stats"),
        ("GET", f"{b}/report"),
        ("GET", f"{b}/results.csv"),
        ("GET", f"{b}/results.jsonl"),
        ("GET", f"{b}/jobs"),
        ("POST", f"{b}/jobs"),
        ("GET", "/api/v1/jobs"),
        ("GET", "/api/v1/jobs/{job_id}"),
        ("POST", "/api/v1/jobs/{job_id}/cancel"),
        ("GET", "/api/v1/jobs/{job_id}/attempts"),
        ("PATCH", "/api/v1/jobs/{job_id}"),
        ("GET", "/api/v1/jobs/{job_id}/explain"),
        ("POST", "/api/v1/jobs/{job_id}/opt-out"),
        ("GET", "/api/v1/account/dnc"),
        ("POST", "/api/v1/account/dnc"),
        ("DELETE", "/api/v1/account/dnc/{e164}"),
        ("GET", "/api/v1/operations"),
        ("GET", "/api/v1/operations/{operation_id}"),
        ("POST", "/api/v1/accounts"),
        ("GET", "/api/v1/account/credits"),
        ("POST", "/api/v1/account/credits"),
        ("GET", "/api/v1/account/webhooks"),
        ("POST", "/api/v1/account/webhooks"),
        ("GET", "/api/v1/account/webhooks/{id}"),
        ("PUT", "/api/v1/account/webhooks/{id}"),
        ("PATCH", "/api/v1/account/webhooks/{id}"),
        ("DELETE", "/api/v1/account/webhooks/{id}"),
        ("GET", "/api/v1/account/webhooks/{id}/deliveries"),
        ("POST", "/api/v1/account/webhooks/{id}/rotate-secret"),
    }
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            codes = set(operation["responses"])
            assert {"400", "401", "403", "404", "429"} <= codes, (method, path)
    assert "Error" in schema["components"]["schemas"]


@pytest.mark.parametrize("path", ["/api/v1/docs", "/api/v1/redoc/"])
def test_schema__interactive_docs_are_served(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert b"/api/v1/schema" in response.content


def _load_schema():
    """The schema as /api/v1/schema serves it, bound to the WSGI app."""
    document = SchemaGenerator().get_schema(request=None, public=True)
    loaded = schemathesis.openapi.from_dict(
        json.loads(OpenApiJsonRenderer().render(document))
    )
    loaded.app = get_wsgi_application()
    return loaded


schema = _load_schema()


@pytest.fixture
def wsgi_calls(db, settings):
    # Throttling would turn a long run into 429s; it has its own tests.
    settings.API_THROTTLE_RATE = ""
    # As Django's test client does: the test's transaction must survive the
    # end of each request, so connections are not closed between requests.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def api_world(wsgi_calls, member, account):
    """The caller's token, and a factory of fresh batches with a job."""
    key = api_token_create(user=member)

    def fresh():
        batch = BatchFactory(account=account)
        job = JobFactory(batch=batch)
        JobFactory(batch=batch, status=JobStatus.COMPLETED)
        return batch, job

    return key, fresh


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=10,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_api__schemathesis_finds_no_500_and_no_schema_violation(case, api_world):
    key, fresh = api_world
    if case.path_parameters:
        batch, job = fresh()
        if "batch_id" in case.path_parameters:
            case.path_parameters["batch_id"] = batch.batch_id
        if "job_id" in case.path_parameters:
            case.path_parameters["job_id"] = job.pk
    case.call_and_validate(
        headers={"Authorization": f"Token {key}"},
        checks=[
            not_a_server_error,
            response_schema_conformance,
            status_code_conformance,
            content_type_conformance,
        ],
    )


@pytest.mark.parametrize("path", ["/api/v1/docs", "/api/v1/redoc/"])
def test_schema__docs_load_their_scripts_from_our_static_files(client, path):
    body = client.get(path).content.decode()
    assert "/static/drf_spectacular_sidecar/" in body
    assert "cdn." not in body
