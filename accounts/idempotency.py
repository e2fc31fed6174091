"""Idempotency-Key for POSTs that create things (batches, job imports) or
move money (credits).

The key row is inserted first, in the same transaction as the creation, and
updated with the response before commit. Two concurrent requests with one key
therefore cannot both create: the second INSERT blocks on the unique index
until the first commits, then fails, and the second request answers with the
stored response. If the first request fails, nothing is stored (its
transaction rolls back) and a retry runs afresh. Only successful responses are
replayed; an error can always be retried.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.response import Response

from accounts.models import Account, IdempotencyKey
from callcenter.api import ApiError

HEADER = "Idempotency-Key"
REPLAY_HEADER = "Idempotent-Replayed"
_KEY_RE = re.compile(r"^[\x20-\x7e]{1,255}$")


def request_fingerprint(request) -> str:
    digest = hashlib.sha256()
    digest.update(f"{request.method} {request.path}\n".encode())
    files = getattr(request, "FILES", None) or {}
    data = request.data
    if hasattr(data, "lists"):  # a QueryDict from a form or multipart body
        data = dict(data.lists())
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k not in files}
    digest.update(
        json.dumps(data, sort_keys=True, default=str, separators=(",", ":")).encode()
    )
    for name in sorted(files):
        upload = files[name]
        digest.update(f"\nfile {name}\n".encode())
        for chunk in upload.chunks():
            digest.update(chunk)
        upload.seek(0)
    return digest.hexdigest()


def idempotent(
    request,
    *,
    account: Account,
    create: Callable[[], Response],
    after_commit: Callable[[Response], Response] | None = None,
) -> Response:
    """Run ``create`` once per (account, Idempotency-Key).

    ``after_commit``, if given, finishes the first request's work after the
    key and ``create``'s writes have committed (long follow-up work that must
    not hold their locks); the response it returns is the one stored for
    replays. A replay never runs it.
    """
    key = request.headers.get(HEADER)
    if key is None:
        response = create()
        return after_commit(response) if after_commit else response
    if not _KEY_RE.match(key):
        raise ApiError(
            f"{HEADER} must be 1 to 255 printable ASCII characters.",
            code="invalid_idempotency_key",
        )
    fingerprint = request_fingerprint(request)
    ttl = timedelta(hours=settings.API_IDEMPOTENCY_TTL_HOURS)
    with transaction.atomic():
        # An expired key is forgotten, so the key can be used again.
        IdempotencyKey.objects.filter(
            account=account, key=key, created_at__lt=timezone.now() - ttl
        ).delete()
        try:
            with transaction.atomic():
                record = IdempotencyKey.objects.create(
                    account=account,
                    key=key,
                    method=request.method,
                    path=request.path[:255],
                    fingerprint=fingerprint,
                    response_status=0,
                    response_body={},
                )
        except IntegrityError:
            stored = IdempotencyKey.objects.get(account=account, key=key)
            if stored.fingerprint != fingerprint:
                raise ApiError(
                    f"This {HEADER} was already used for a different request "
                    f"({stored.method} {stored.path}); use a new key.",
                    code="idempotency_key_reused",
                    status_code=422,
                ) from None
            return Response(
                stored.response_body,
                status=stored.response_status,
                headers={REPLAY_HEADER: "true"},
            )
        response = create()
        record.response_status = response.status_code
        record.response_body = response.data
        record.save(update_fields=["response_status", "response_body"])
    if after_commit is not None:
        response = after_commit(response)
        IdempotencyKey.objects.filter(pk=record.pk).update(response_body=response.data)
    return response


def idempotency_keys_purge(*, now: datetime | None = None) -> int:
    """Delete keys older than API_IDEMPOTENCY_TTL_HOURS; returns how many.

    Expired keys are already ignored (and replaced on reuse); this keeps the
    table small. Meant for a periodic maintenance task.
    """
    cutoff = (now or timezone.now()) - timedelta(
        hours=settings.API_IDEMPOTENCY_TTL_HOURS
    )
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
    return deleted
