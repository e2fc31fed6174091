from __future__ import annotations

import ipaddress
import json
import socket
import ssl
import threading
import time
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from accounts.tests.factories import AccountFactory
from batches import services as batch_services
from batches.tests.factories import BatchFactory
from callcenter.actor import Actor
from jobs.models import Job, JobStatus
from jobs.signals import send_jobs_finished_on_commit
from jobs.tests.factories import JobFactory
from webhooks import events, signing, transport
from webhooks.models import (
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    generate_secret,
)
from webhooks.services import (
    EXCERPT_CHARS,
    backoff_seconds,
    webhook_deliver,
    webhook_endpoint_rotate_secret,
    webhooks_deliver_due,
)
from webhooks.tests.server import ok, raw_server
from webhooks.urlcheck import refused_address, validate_webhook_url

ACTOR = Actor.system("tests")


def endpoint_for(account, url, **kwargs):
    return WebhookEndpoint.objects.create(account=account, url=url, **kwargs)


def bodies(receiver):
    return [json.loads(r.body) for r in receiver.requests]


# --- URL validation --------------------------------------------------------


@override_settings(WEBHOOKS_ALLOW_PRIVATE_NETWORKS=False)
@pytest.mark.parametrize(
    "url",
    [
        "ftp://93.184.215.14/x",
        "file:///etc/passwd",
        "http://127.0.0.1:8000/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://172.16.5.4/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[fe80::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0/hook",
        "http://user:pw@93.184.215.14/hook",
        "http:///nohost",
    ],
)
def test_validate_webhook_url__refuses_non_http_and_private_addresses(url):
    with pytest.raises(ValidationError):
        validate_webhook_url(url)


@override_settings(WEBHOOKS_ALLOW_PRIVATE_NETWORKS=False)
def test_validate_webhook_url__accepts_public_addresses():
    validate_webhook_url("https://93.184.215.14/hooks")
    validate_webhook_url("http://[2606:4700:4700::1111]:8080/hooks")


@override_settings(WEBHOOKS_ALLOW_PRIVATE_NETWORKS=True)
def test_validate_webhook_url__private_allowed_by_setting_but_scheme_still_checked():
    validate_webhook_url("http://127.0.0.1:9/hook")
    with pytest.raises(ValidationError):
        validate_webhook_url("gopher://127.0.0.1/")


@pytest.mark.django_db
@override_settings(WEBHOOKS_ALLOW_PRIVATE_NETWORKS=False)
def test_webhook_endpoint__full_clean_validates_url_and_event_types(account):
    endpoint = WebhookEndpoint(account=account, url="http://127.0.0.1/x")
    with pytest.raises(ValidationError) as exc:
        endpoint.full_clean()
    assert "url" in exc.value.message_dict
    endpoint = WebhookEndpoint(
        account=account, url="https://93.184.215.14/x", event_types=["batch.exploded"]
    )
    with pytest.raises(ValidationError) as exc:
        endpoint.full_clean()
    assert "event_types" in exc.value.message_dict


# --- Signing ---------------------------------------------------------------


def test_signing__verify_accepts_its_own_signature_and_rejects_tampering():
    secret = generate_secret()
    body = b'{"a":1}'
    headers = signing.delivery_headers(
        secrets=[secret],
        delivery_id="d1",
        event="batch.paused",
        body=body,
        timestamp=1_700_000_000,
    )
    assert headers["webhook-signature"].startswith("v1,")
    assert signing.verify(secret, headers, body, now=1_700_000_010)
    assert not signing.verify(generate_secret(), headers, body, now=1_700_000_010)
    assert not signing.verify(secret, headers, b'{"a":2}', now=1.7e9)
    # Too old: a replayed request.
    assert not signing.verify(secret, headers, body, now=1.7e9 + 3600)


def test_backoff_seconds__doubles_and_is_capped(settings):
    settings.WEBHOOK_RETRY_BASE_SECONDS = 30
    settings.WEBHOOK_RETRY_MAX_SECONDS = 200
    assert [backoff_seconds(n) for n in (1, 2, 3, 4, 5)] == [30, 60, 120, 200, 200]


# --- Delivery to a real HTTP server ------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_batch_pause__delivers_a_signed_webhook_after_commit(receiver):
    batch = BatchFactory()
    endpoint = endpoint_for(batch.account, receiver.url)

    batch_services.batch_pause(batch=batch, actor=ACTOR, reason="wrong script")

    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    assert request.path == "/hooks"
    headers = {k.lower(): v for k, v in request.headers.items()}
    # Any Standard Webhooks library verifies it: here, the off-the-shelf one.
    assert Webhook(endpoint.secret).verify(request.body, headers) == json.loads(
        request.body
    )
    assert signing.verify(endpoint.secret, headers, request.body)
    with pytest.raises(WebhookVerificationError):
        Webhook(endpoint.secret).verify(request.body + b" ", headers)
    payload = json.loads(request.body)
    assert payload["type"] == events.BATCH_PAUSED
    assert headers["x-callcenter-event"] == "batch.paused"
    assert payload["data"]["batch"]["batch_id"] == batch.batch_id
    assert payload["data"]["batch"]["state"] == "paused"
    assert payload["data"]["event"]["reason"] == "wrong script"
    delivery = WebhookDelivery.objects.get()
    assert headers["webhook-id"] == str(delivery.delivery_id)
    assert payload["id"] == str(delivery.delivery_id)
    assert delivery.status == WebhookDelivery.Status.SUCCEEDED
    assert delivery.attempts == 1
    assert delivery.last_status_code == 200
    assert list(delivery.attempt_log.values_list("status_code", flat=True)) == [200]


@pytest.mark.django_db(transaction=True)
def test_webhook_secret_rotation__old_and_new_secret_both_sign_until_the_grace_ends(
    receiver, settings
):
    """Standard Webhooks' rotation: two space-separated signatures, so a
    receiver still on the old secret, and one already on the new, both
    verify with the off-the-shelf library; after the grace, only the new."""
    settings.WEBHOOK_SECRET_ROTATION_GRACE_HOURS = 24
    batch = BatchFactory()
    endpoint = endpoint_for(batch.account, receiver.url)
    old = endpoint.secret
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        endpoint = webhook_endpoint_rotate_secret(endpoint=endpoint, actor=ACTOR)
    new = endpoint.secret
    assert new != old

    with time_machine.travel(start + timedelta(hours=23), tick=False):
        batch_services.batch_pause(batch=batch, actor=ACTOR)
        request = receiver.requests[-1]
        headers = {k.lower(): v for k, v in request.headers.items()}
        assert len(headers["webhook-signature"].split(" ")) == 2
        Webhook(old).verify(request.body, headers)
        Webhook(new).verify(request.body, headers)

    with time_machine.travel(start + timedelta(hours=25), tick=False):
        batch_services.batch_resume(batch=batch, actor=ACTOR)
        request = receiver.requests[-1]
        headers = {k.lower(): v for k, v in request.headers.items()}
        assert len(headers["webhook-signature"].split(" ")) == 1
        Webhook(new).verify(request.body, headers)
        with pytest.raises(WebhookVerificationError):
            Webhook(old).verify(request.body, headers)


@pytest.mark.django_db(transaction=True)
def test_webhook__nothing_is_sent_for_a_transition_that_rolled_back(receiver):
    batch = BatchFactory()
    endpoint_for(batch.account, receiver.url)

    class Boom(Exception):
        pass

    def pause_then_fail():
        with transaction.atomic():
            batch_services.batch_pause(batch=batch, actor=ACTOR)
            raise Boom

    with pytest.raises(Boom):
        pause_then_fail()

    assert receiver.requests == []
    assert not WebhookDelivery.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_webhook_delivery__retries_after_500s_with_backoff_then_succeeds(
    receiver, settings
):
    settings.WEBHOOK_RETRY_BASE_SECONDS = 30
    receiver.statuses = [500, 503, 200]
    batch = BatchFactory()
    endpoint_for(batch.account, receiver.url)
    start = timezone.now()

    with time_machine.travel(start, tick=False):
        batch_services.batch_pause(batch=batch, actor=ACTOR)
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == WebhookDelivery.Status.PENDING
    assert delivery.next_attempt_at == start + timedelta(seconds=30)

    # Not due yet: nothing is sent.
    with time_machine.travel(start + timedelta(seconds=29), tick=False):
        assert webhooks_deliver_due() == 0
    with time_machine.travel(start + timedelta(seconds=31), tick=False):
        assert webhooks_deliver_due() == 1
    delivery.refresh_from_db()
    assert delivery.next_attempt_at == start + timedelta(seconds=31 + 60)
    with time_machine.travel(start + timedelta(seconds=92), tick=False):
        assert webhooks_deliver_due() == 1

    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.SUCCEEDED
    assert delivery.attempts == 3
    assert delivery.next_attempt_at is None
    attempts = list(
        WebhookAttempt.objects.filter(delivery=delivery).values_list(
            "number", "status_code", "error"
        )
    )
    assert attempts == [(1, 500, "HTTP 500"), (2, 503, "HTTP 503"), (3, 200, "")]
    # Each retry is the same event, signed afresh, with the same delivery id.
    assert len({b["id"] for b in bodies(receiver)}) == 1


@pytest.mark.django_db(transaction=True)
def test_webhook_delivery__gives_up_after_max_attempts(receiver, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    settings.WEBHOOK_RETRY_BASE_SECONDS = 10
    receiver.statuses = [500]
    batch = BatchFactory()
    endpoint_for(batch.account, receiver.url)
    start = timezone.now()

    with time_machine.travel(start, tick=False):
        batch_services.batch_pause(batch=batch, actor=ACTOR)
    for minutes in (1, 2, 3, 4):
        with time_machine.travel(start + timedelta(minutes=minutes), tick=False):
            webhooks_deliver_due()

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == WebhookDelivery.Status.FAILED
    assert delivery.attempts == 3
    assert delivery.last_status_code == 500
    assert delivery.response_excerpt == "status 500"
    assert len(receiver.requests) == 3
    assert delivery.attempt_log.count() == 3


@pytest.mark.django_db(transaction=True)
def test_webhook_delivery__connection_errors_are_logged_and_retried(settings):
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    batch = BatchFactory()
    endpoint_for(batch.account, f"http://127.0.0.1:{port}/hooks")

    batch_services.batch_pause(batch=batch, actor=ACTOR)

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == WebhookDelivery.Status.PENDING
    assert delivery.last_status_code is None
    assert "ConnectError" in delivery.last_error
    assert delivery.attempt_log.get().error == delivery.last_error


@pytest.mark.django_db(transaction=True)
def test_webhook_delivery__refused_at_send_time_when_url_turns_private(
    receiver, settings
):
    batch = BatchFactory()
    endpoint_for(batch.account, receiver.url)
    settings.WEBHOOKS_ALLOW_PRIVATE_NETWORKS = False

    batch_services.batch_pause(batch=batch, actor=ACTOR)

    delivery = WebhookDelivery.objects.get()
    assert receiver.requests == []
    assert delivery.status == WebhookDelivery.Status.FAILED
    assert delivery.last_error.startswith("refused:")


@pytest.mark.django_db(transaction=True)
def test_webhooks_deliver_due__sends_a_delivery_whose_task_was_lost(receiver):
    account = AccountFactory()
    endpoint = endpoint_for(account, receiver.url)
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint,
        event=events.BATCH_RESUMED,
        payload={"type": "batch.resumed"},
        next_attempt_at=timezone.now() - timedelta(minutes=5),
    )
    assert webhooks_deliver_due() == 1
    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.SUCCEEDED
    assert webhooks_deliver_due() == 0


@pytest.mark.django_db(transaction=True)
def test_webhook_events__batch_lifecycle_and_subscriptions(receiver):
    batch = BatchFactory()
    other = BatchFactory()  # another account: never told about `batch`
    endpoint_for(batch.account, receiver.url)
    endpoint_for(other.account, receiver.url + "/other")
    endpoint_for(
        batch.account, receiver.url + "/only-cancel", event_types=["batch.cancelled"]
    )

    batch_services.batch_pause(batch=batch, actor=ACTOR)
    batch_services.batch_resume(batch=batch, actor=ACTOR)
    batch_services.batch_cancel(batch=batch, actor=ACTOR)
    batch_services.batch_delete(batch=batch, actor=ACTOR)

    sent = [(r.path, json.loads(r.body)["type"]) for r in receiver.requests]
    assert sent == [
        ("/hooks", "batch.paused"),
        ("/hooks", "batch.resumed"),
        ("/hooks", "batch.cancelled"),
        ("/hooks/only-cancel", "batch.cancelled"),
        ("/hooks", "batch.deleted"),
    ]


def _finish(job, status):
    with transaction.atomic():
        Job.objects.filter(pk=job.pk).update(status=status)
        job.status = status
        send_jobs_finished_on_commit([(job, "answered")])


@pytest.mark.django_db(transaction=True)
def test_webhook_events__job_events_are_opt_in(receiver):
    batch = BatchFactory()
    endpoint_for(batch.account, receiver.url)  # default: batch events only
    endpoint_for(
        batch.account,
        receiver.url + "/jobs",
        event_types=["job.completed", "job.failed"],
    )
    ok, bad, _still_open = (
        JobFactory(batch=batch, status=JobStatus.IN_PROGRESS) for _ in range(3)
    )

    _finish(ok, JobStatus.COMPLETED)
    _finish(bad, JobStatus.FAILED)

    sent = [(r.path, json.loads(r.body)) for r in receiver.requests]
    assert [(path, body["type"]) for path, body in sent] == [
        ("/hooks/jobs", "job.completed"),
        ("/hooks/jobs", "job.failed"),
    ]
    assert sent[0][1]["data"]["job"]["id"] == ok.pk
    assert sent[0][1]["data"]["job"]["batch_id"] == batch.batch_id


@pytest.mark.django_db(transaction=True)
def test_webhook_events__jobs_finished_together_look_up_the_endpoints_once(receiver):
    from django.test.utils import CaptureQueriesContext

    batch = BatchFactory()
    endpoint_for(batch.account, receiver.url, event_types=["job.completed"])
    jobs = [JobFactory(batch=batch, status=JobStatus.IN_PROGRESS) for _ in range(4)]
    JobFactory(batch=batch)  # still open: the batch does not complete
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        Job.objects.filter(pk__in=[j.pk for j in jobs]).update(
            status=JobStatus.COMPLETED
        )
        for job in jobs:
            job.status = JobStatus.COMPLETED
        send_jobs_finished_on_commit([(job, "answered") for job in jobs])

    lookups = [
        q
        for q in queries.captured_queries
        if q["sql"].startswith('SELECT "webhooks_webhookendpoint"')
    ]
    assert len(lookups) == 1
    sent = sorted(json.loads(r.body)["data"]["job"]["id"] for r in receiver.requests)
    assert sent == sorted(job.pk for job in jobs)


@pytest.mark.django_db(transaction=True)
def test_webhook_events__batch_completed_fires_once_when_workers_finish_together(
    receiver,
):
    workers = 6
    batch = BatchFactory()
    endpoint_for(batch.account, receiver.url)
    jobs = [
        JobFactory(batch=batch, status=JobStatus.IN_PROGRESS, claimed_by=f"w{i}")
        for i in range(workers)
    ]
    barrier = threading.Barrier(workers)
    errors = []

    def worker(job):
        try:
            with transaction.atomic():
                Job.objects.filter(pk=job.pk).update(status=JobStatus.COMPLETED)
                job.status = JobStatus.COMPLETED
                send_jobs_finished_on_commit([(job, "answered")])
                barrier.wait(timeout=30)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(j,)) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert errors == []
    types = [json.loads(r.body)["type"] for r in receiver.requests]
    assert types.count("batch.completed") == 1
    assert WebhookDelivery.objects.filter(event="batch.completed").count() == 1


# --- Admin -------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_delivery_admin__shows_attempts_read_only_and_retries(
    receiver, admin_client, settings
):
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    receiver.statuses = [500, 200]
    batch = BatchFactory()
    endpoint_for(batch.account, receiver.url)
    batch_services.batch_pause(batch=batch, actor=ACTOR)
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == WebhookDelivery.Status.FAILED

    changelist = admin_client.get(reverse("admin:webhooks_webhookdelivery_changelist"))
    assert changelist.status_code == 200
    assert "batch.paused" in changelist.content.decode()
    page = admin_client.get(
        reverse("admin:webhooks_webhookdelivery_change", args=[delivery.pk])
    )
    assert page.status_code == 200
    html = page.content.decode()
    assert "HTTP 500" in html
    assert 'name="_save"' not in html  # read-only

    response = admin_client.post(
        reverse("admin:webhooks_webhookdelivery_changelist"),
        {"action": "retry_now", "_selected_action": [delivery.pk]},
        follow=True,
    )
    assert "1 delivery queued" in response.content.decode()
    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.SUCCEEDED
    assert delivery.attempt_log.count() == 2


@pytest.mark.django_db
def test_webhooks_deliver_due__stops_at_its_time_budget(receiver):
    endpoint = endpoint_for(AccountFactory(), receiver.url)
    for _ in range(3):
        WebhookDelivery.objects.create(
            endpoint=endpoint,
            event=events.BATCH_PAUSED,
            payload={},
            next_attempt_at=timezone.now() - timedelta(seconds=1),
        )
    assert webhooks_deliver_due(budget_seconds=0) == 0
    assert webhooks_deliver_due() == 3


# --- One resolution, one address (SSRF through DNS rebinding) ----------------


def fake_dns(monkeypatch, answers):
    """Resolve each name of ``answers`` to its n-th address on the n-th
    lookup (the last one repeats); other names resolve as usual. Returns the
    addresses handed out, in order."""
    real = socket.getaddrinfo
    handed = []

    def getaddrinfo(host, port, *args, **kwargs):
        if host not in answers:
            return real(host, port, *args, **kwargs)
        seen = sum(1 for name, _ in handed if name == host)
        address = answers[host][min(seen, len(answers[host]) - 1)]
        handed.append((host, address))
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port)))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return handed


def due_delivery(endpoint):
    return WebhookDelivery.objects.create(
        endpoint=endpoint,
        event=events.BATCH_PAUSED,
        payload={"type": "batch.paused"},
        next_attempt_at=timezone.now(),
    )


@pytest.mark.django_db(transaction=True)
def test_webhook_delivery__a_rebinding_host_never_gets_the_private_address(
    receiver, settings, monkeypatch
):
    """The host answers a public address to the first lookup and the
    receiver's loopback address to the next: the request must go to the
    address that was checked, or nowhere."""
    port = urlsplit(receiver.url).port
    endpoint = endpoint_for(AccountFactory(), f"http://rebind.test:{port}/hooks")
    delivery = due_delivery(endpoint)
    settings.WEBHOOKS_ALLOW_PRIVATE_NETWORKS = False
    # The public address is unreachable from here, or at worst slow: the
    # deadline bounds the attempt either way.
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.5
    lookups = fake_dns(monkeypatch, {"rebind.test": ["93.184.215.14", "127.0.0.1"]})

    webhook_deliver(delivery_pk=delivery.pk)

    assert receiver.requests == []
    assert lookups == [("rebind.test", "93.184.215.14")]  # once, at the check
    attempt = WebhookAttempt.objects.get(delivery=delivery)
    assert attempt.status_code is None
    assert attempt.response_excerpt == ""
    assert attempt.error


@pytest.mark.django_db(transaction=True)
def test_webhook_delivery__a_host_that_turns_private_is_refused_with_nothing_stored(
    receiver, settings, monkeypatch
):
    port = urlsplit(receiver.url).port
    endpoint = endpoint_for(AccountFactory(), f"http://rebind.test:{port}/hooks")
    delivery = due_delivery(endpoint)
    settings.WEBHOOKS_ALLOW_PRIVATE_NETWORKS = False
    fake_dns(monkeypatch, {"rebind.test": ["127.0.0.1"]})

    webhook_deliver(delivery_pk=delivery.pk)

    assert receiver.requests == []
    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.FAILED
    assert delivery.last_status_code is None
    assert delivery.response_excerpt == ""
    assert delivery.last_error.startswith("refused:")
    # The tenant is not told what an internal name resolves to.
    assert "127.0.0.1" not in delivery.last_error


@pytest.mark.django_db(transaction=True)
def test_webhook_delivery__goes_to_the_resolved_address_with_the_host_header(
    receiver, monkeypatch
):
    port = urlsplit(receiver.url).port
    endpoint = endpoint_for(AccountFactory(), f"http://hooks.test:{port}/hooks?x=1")
    delivery = due_delivery(endpoint)
    fake_dns(monkeypatch, {"hooks.test": ["127.0.0.1"]})

    assert webhook_deliver(delivery_pk=delivery.pk) == "succeeded"

    [request] = receiver.requests
    assert request.path == "/hooks?x=1"
    assert request.headers["Host"] == f"hooks.test:{port}"


@pytest.mark.django_db(transaction=True)
def test_webhook_delivery__tls_names_and_verifies_the_host_at_the_pinned_address(
    local_ca, monkeypatch
):
    monkeypatch.setattr(
        transport,
        "tls_context",
        lambda: ssl.create_default_context(cafile=local_ca.ca_file),
    )
    fake_dns(monkeypatch, {"hooks.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
    account = AccountFactory()
    with raw_server(ok, tls=local_ca.server_context) as server:
        good = due_delivery(
            endpoint_for(account, f"https://hooks.test:{server.port}/hooks")
        )
        # The same server under a name its certificate does not carry.
        bad = due_delivery(
            endpoint_for(account, f"https://other.test:{server.port}/hooks")
        )

        assert webhook_deliver(delivery_pk=good.pk) == "succeeded"
        assert webhook_deliver(delivery_pk=bad.pk) == "pending"

    assert server.server_names[0] == "hooks.test"
    assert len(server.heads) == 1  # the mismatched name never sent a request
    assert f"host: hooks.test:{server.port}".encode() in server.heads[0].lower()
    bad.refresh_from_db()
    assert "CERTIFICATE_VERIFY_FAILED" in bad.last_error
    assert bad.last_status_code is None


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.1",
        "100.64.0.1",  # carrier-grade NAT
        "169.254.169.254",
        "224.0.0.1",
        "240.0.0.1",
        "0.0.0.0",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fec0::1",
        "ff02::1",
        "::ffff:10.0.0.1",
        "::7f00:1",  # IPv4-compatible (deprecated) form of 127.0.0.1
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    ],
)
def test_refused_address__every_non_public_form(address):
    assert refused_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:4700:4700::1111"])
def test_refused_address__public_addresses_pass(address):
    assert not refused_address(ipaddress.ip_address(address))


# --- A slow or huge reply cannot hold a delivery worker ----------------------


def trickle(conn, state):
    """Headers at once, then the body a byte at a time, so that no single
    read ever waits long enough for a per-read timeout to fire."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
    # Only a client with no total deadline gets this far; then it ends.
    guard = time.monotonic() + 30
    while time.monotonic() < guard and not state.stop.is_set():
        conn.sendall(b".")
        state.sent.append(1)
        state.stop.wait(0.05)


@pytest.mark.django_db(transaction=True)
def test_webhook_delivery__a_trickling_endpoint_is_abandoned_at_the_deadline(
    settings,
):
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.5
    with raw_server(trickle) as server:
        endpoint = endpoint_for(
            AccountFactory(), f"http://127.0.0.1:{server.port}/hooks"
        )
        delivery = due_delivery(endpoint)

        assert webhook_deliver(delivery_pk=delivery.pk) == "pending"

    attempt = WebhookAttempt.objects.get(delivery=delivery)
    assert attempt.error.startswith("timed out")
    assert attempt.status_code is None
    assert attempt.response_excerpt == ""
    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.PENDING  # retried later
    assert delivery.last_error == attempt.error


FLOOD_BYTES = 64 * 1024 * 1024


def flood(conn, state):
    conn.sendall(b"HTTP/1.1 500 Oops\r\nContent-Length: %d\r\n\r\n" % FLOOD_BYTES)
    chunk = b"x" * 65536
    for _ in range(FLOOD_BYTES // len(chunk)):
        conn.sendall(chunk)
        state.sent.append(len(chunk))


@pytest.mark.django_db(transaction=True)
def test_webhook_delivery__reads_only_the_start_of_a_huge_reply():
    with raw_server(flood) as server:
        endpoint = endpoint_for(
            AccountFactory(), f"http://127.0.0.1:{server.port}/hooks"
        )
        delivery = due_delivery(endpoint)

        webhook_deliver(delivery_pk=delivery.pk)

        # The client hung up after its first kilobyte: the server could not
        # send the body (it blocks, then fails, once the socket buffers fill).
        assert sum(server.sent) < FLOOD_BYTES

    delivery.refresh_from_db()
    assert delivery.last_status_code == 500
    assert delivery.last_error == "HTTP 500"
    assert delivery.response_excerpt == "x" * EXCERPT_CHARS
    assert delivery.attempt_log.get().response_excerpt == "x" * EXCERPT_CHARS


# --- Queues: deliveries never take the maintenance workers --------------------


@pytest.mark.django_db
def test_webhook_tasks__run_on_their_own_queue_and_maintenance_on_the_default(
    monkeypatch, django_capture_on_commit_callbacks, receiver
):
    from django_q.conf import Conf
    from django_q.models import OrmQ, Schedule

    from callcenter.schedules import PREFIX, ensure_schedules

    ensure_schedules()
    clusters = dict(
        Schedule.objects.filter(name__startswith=PREFIX).values_list("func", "cluster")
    )
    assert clusters.pop("webhooks.tasks.deliver_due") == "webhooks"
    assert clusters  # the maintenance tasks
    assert set(clusters.values()) == {None}  # the default cluster's

    monkeypatch.setattr(Conf, "SYNC", False)  # queue the task, do not run it
    batch = BatchFactory()
    endpoint_for(batch.account, receiver.url)
    with django_capture_on_commit_callbacks(execute=True):
        batch_services.batch_pause(batch=batch, actor=ACTOR)

    assert list(OrmQ.objects.values_list("key", flat=True)) == ["webhooks"]
    assert receiver.requests == []
