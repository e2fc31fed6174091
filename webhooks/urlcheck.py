"""Webhook URLs may only point at the public internet.

Without this check an account could make the server call its own admin,
the cloud metadata service (169.254.169.254) or anything on the private
network (SSRF). The host is resolved and every address it resolves to must be
global. The check runs when an endpoint is saved and again before each
delivery, because DNS answers change.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError


def _refused(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def validate_webhook_url(url: str) -> None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValidationError(f"Invalid URL: {exc}", code="invalid") from None
    if parts.scheme not in ("http", "https"):
        raise ValidationError("Only http and https URLs are allowed.", code="scheme")
    host = parts.hostname
    if not host:
        raise ValidationError("The URL has no host.", code="invalid")
    if parts.username or parts.password:
        raise ValidationError("Credentials in the URL are not allowed.", code="auth")
    if settings.WEBHOOKS_ALLOW_PRIVATE_NETWORKS:
        return
    try:
        infos = socket.getaddrinfo(
            host,
            port or (443 if parts.scheme == "https" else 80),
            0,
            socket.SOCK_STREAM,
        )
    except (socket.gaierror, UnicodeError):
        raise ValidationError(
            f"The host {host!r} cannot be resolved.", code="dns"
        ) from None
    for info in infos:
        address = str(info[4][0]).split("%", 1)[0]
        if _refused(ipaddress.ip_address(address)):
            raise ValidationError(
                f"The host {host!r} resolves to a private, loopback or link-local "
                f"address ({address}); webhooks go to public addresses only.",
                code="private",
            )
