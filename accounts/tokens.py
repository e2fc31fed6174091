"""API keys: made once, stored as a hash, checked in constant time.

Why SHA-256 and not a password hash (PBKDF2, Argon2): a key is 160 random
bits from ``secrets``, not something a person chose. A slow hash protects
low-entropy secrets from guessing; against 2^160 possibilities guessing is
hopeless at any speed, so slowness would only cost CPU on every request. No
salt is needed either, for the same reason: no two users share a key and no
table of precomputed hashes of random keys can exist.

The lookup is by the digest over a unique index, then the digests are
compared with ``hmac.compare_digest``. Timing can at most tell an attacker
how the digest of a key they sent sorts against stored digests, and a
digest is of no use without a preimage.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from django.db import transaction
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication

from accounts.models import ApiToken

KEY_BYTES = 20  # 40 hex characters, the same shape as the keys made before
PREFIX_LENGTH = 8


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def api_token_create(*, user: Any) -> str:
    """Give ``user`` a new key, replacing any old one (which stops working at
    once), and return it. It is the only time the key is available."""
    key = secrets.token_hex(KEY_BYTES)
    with transaction.atomic():
        ApiToken.objects.filter(user=user).delete()
        ApiToken.objects.create(
            user=user, prefix=key[:PREFIX_LENGTH], key_hash=hash_key(key)
        )
    return key


class HashedTokenAuthentication(TokenAuthentication):
    """``Authorization: Token <key>`` against ``ApiToken``: REST framework's
    header parsing and 401 challenge, over hashed keys."""

    def authenticate_credentials(self, key: str) -> tuple[Any, ApiToken]:
        digest = hash_key(key)
        token = (
            ApiToken.objects.select_related("user").filter(key_hash=digest).first()
        )
        if token is None or not hmac.compare_digest(token.key_hash, digest):
            raise exceptions.AuthenticationFailed("Invalid token.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        return (token.user, token)
