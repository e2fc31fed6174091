"""The kernel's Standard Webhooks signatures, checked against two
implementations that are not ours: the spec's published example (secret,
id, timestamp, body and signature) and the off-the-shelf ``standardwebhooks``
package, the library a receiver would use."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from callcenter import standard_webhooks as swh

# The example of the spec's reference implementation.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TS = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_sign__matches_the_specs_example():
    assert swh.sign(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY) == SPEC_SIGNATURE


def test_sign_headers__verified_by_the_standardwebhooks_library():
    secret = swh.generate_secret()
    body = b'{"attempt_id":"abc","phone_number":"+14155550123"}'
    headers = swh.sign_headers([secret], "abc", body)

    assert Webhook(secret).verify(body, headers) == {
        "attempt_id": "abc",
        "phone_number": "+14155550123",
    }
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"abc", b"abd"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(swh.generate_secret()).verify(body, headers)
    old = swh.sign_headers([secret], "abc", body, timestamp=int(time.time()) - 600)
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(secret).verify(body, old)


def test_sign_headers__several_secrets_give_space_separated_signatures():
    """While a secret rotates, a receiver that knows either one verifies."""
    old, new = swh.generate_secret(), swh.generate_secret()
    body = b"{}"
    headers = swh.sign_headers([new, old], "m1", body)

    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(body, headers)
        assert swh.verify([secret], headers, body) == "m1"


def test_verify__accepts_the_librarys_signature_and_refuses_tampering():
    secret = swh.generate_secret()
    body = b'{"status":"ended","outcome":"answered"}'
    now = time.time()
    signed = Webhook(secret).sign(
        "evt_1", datetime.fromtimestamp(now, UTC), body.decode()
    )
    headers = {
        "Webhook-Id": "evt_1",  # any case
        "Webhook-Timestamp": str(int(now)),
        "Webhook-Signature": signed,
    }
    assert swh.verify([secret], headers, body, now=now + 10) == "evt_1"

    refused = [
        ([secret], headers, body.replace(b"answered", b"busy"), now),
        ([swh.generate_secret()], headers, body, now),
        ([secret], {**headers, "Webhook-Id": "evt_2"}, body, now),
        ([secret], headers, body, now + 301),  # a replay
        ([secret], headers, body, now - 301),  # from the future
        ([secret], {**headers, "Webhook-Timestamp": "soon"}, body, now),
        ([secret], {**headers, "Webhook-Signature": "v1,%%%"}, body, now),
        ([secret], {**headers, "Webhook-Signature": "v2," + signed[3:]}, body, now),
        ([secret], {**headers, "Webhook-Signature": "nonsense"}, body, now),
        ([secret], {"Webhook-Id": "evt_1"}, body, now),
        ([], headers, body, now),
        (["not base64!"], headers, body, now),
    ]
    for secrets, hdrs, data, when in refused:
        with pytest.raises(swh.VerificationError):
            swh.verify(secrets, hdrs, data, now=when)


def test_verify__a_body_that_is_not_utf8_is_refused_not_raised():
    secret = swh.generate_secret()
    body = b"\xff\xfe{"
    headers = swh.sign_headers([secret], "x", body)
    assert swh.verify([secret], headers, body) == "x"
    with pytest.raises(swh.VerificationError):
        swh.verify([secret], headers, b"\xff\xfe}")


def test_secret_key__url_safe_secrets_of_before_keep_their_key():
    raw = bytes(range(250, 256)) * 6  # encodes with "-" and "_" in URL-safe
    urlsafe = "whsec_" + base64.urlsafe_b64encode(raw).decode().rstrip("=")
    assert "-" in urlsafe or "_" in urlsafe
    assert swh.secret_key(urlsafe) == raw
    standard = swh.standard_secret(urlsafe)
    headers = swh.sign_headers([urlsafe], "m", b"{}")
    Webhook(standard).verify(b"{}", headers)
    for bad in ("", "whsec_", "whsec_@@@@"):
        with pytest.raises(ValueError, match="secret"):
            swh.secret_key(bad)
