"""Standard Webhooks signatures (https://www.standardwebhooks.com/), the one
signing format of every request we send and of the voice-agent callbacks we
receive: the account webhooks (webhooks/) and the HTTP dialer (jobs/).

The spec, in short:

* the secret is ``whsec_`` followed by the base64 of the key bytes;
* three headers: ``webhook-id`` (the message id, the same on every retry of
  the message, so a receiver de-duplicates on it), ``webhook-timestamp``
  (integer Unix seconds) and ``webhook-signature``;
* the signature is ``v1,`` + base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}"))
  over the raw body bytes; the header may carry several, separated by spaces
  (one per secret while a secret is rotated), and one match is enough;
* a receiver refuses a timestamp too far from its clock (a replay).

Written here rather than taken from the ``standardwebhooks`` package, which
the tests use as the independent verifier: its verifier reads the clock
itself with a fixed tolerance, and raises other exceptions than its own on
a malformed header or a body that is not UTF-8, where our callback endpoint
must answer 403, never 500.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as _secrets
import time
from collections.abc import Iterable, Mapping

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
PREFIX = "whsec_"
VERSION = "v1"
DEFAULT_TOLERANCE = 300
# Generous bounds: a header is a few hundred bytes.
MAX_SIGNATURES = 10


class VerificationError(Exception):
    """The request is not signed by any of the secrets (or too old)."""


def generate_secret(nbytes: int = 32) -> str:
    """A new secret: ``whsec_`` + the base64 of ``nbytes`` random bytes."""
    return PREFIX + base64.b64encode(_secrets.token_bytes(nbytes)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_…`` secret.

    The URL-safe alphabet and missing padding are accepted too: webhook
    secrets issued before this module existed were ``whsec_`` + URL-safe
    base64 without padding, and they keep their key bytes.
    """
    encoded = secret.removeprefix(PREFIX).strip()
    if not encoded:
        raise ValueError("empty webhook secret")
    encoded = encoded.replace("-", "+").replace("_", "/")
    encoded += "=" * (-len(encoded) % 4)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret must be whsec_ + base64") from None
    if not key:
        raise ValueError("empty webhook secret")
    return key


def standard_secret(secret: str) -> str:
    """The same secret (the same key) in the spec's standard base64, for a
    receiver whose library only decodes that alphabet."""
    return PREFIX + base64.b64encode(secret_key(secret)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One signature, ``v1,<base64>``."""
    message = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), message, hashlib.sha256).digest()
    return f"{VERSION},{base64.b64encode(digest).decode()}"


def sign_headers(
    secrets: Iterable[str],
    msg_id: str,
    body: bytes,
    *,
    timestamp: int | None = None,
) -> dict[str, str]:
    """The three headers, signed with every secret given (space-separated
    signatures: the receiver may know either while a secret rotates)."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    signatures = [sign(secret, msg_id, ts, body) for secret in secrets if secret]
    if not signatures:
        raise ValueError("no secret to sign with")
    return {
        ID_HEADER: msg_id,
        TIMESTAMP_HEADER: str(ts),
        SIGNATURE_HEADER: " ".join(signatures),
    }


def verify(
    secrets: Iterable[str],
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> str:
    """Check a signed request; return its ``webhook-id``.

    ``headers`` is any mapping (Django's request.headers, a dict); names are
    matched without regard to case. Raises ``VerificationError`` and nothing
    else, whatever the headers hold.
    """
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    msg_id = lowered.get(ID_HEADER, "")
    raw_ts = lowered.get(TIMESTAMP_HEADER, "")
    raw_sig = lowered.get(SIGNATURE_HEADER, "")
    if not (msg_id and raw_ts and raw_sig):
        raise VerificationError("missing webhook-id, webhook-timestamp or signature")
    if not raw_ts.isascii() or not raw_ts.isdigit() or len(raw_ts) > 12:
        raise VerificationError("webhook-timestamp is not a Unix time")
    timestamp = int(raw_ts)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise VerificationError("webhook-timestamp is outside the tolerance")
    offered = []
    for item in raw_sig.split()[:MAX_SIGNATURES]:
        version, _, value = item.partition(",")
        if version != VERSION:
            continue
        try:
            offered.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            continue
    if not offered:
        raise VerificationError("no v1 signature")
    # The timestamp as sent: it is what the sender signed.
    message = f"{msg_id}.{raw_ts}.".encode() + body
    for secret in secrets:
        try:
            key = secret_key(secret)
        except ValueError:
            continue
        expected = hmac.new(key, message, hashlib.sha256).digest()
        if any(hmac.compare_digest(expected, sig) for sig in offered):
            return msg_id
    raise VerificationError("no signature matches")
