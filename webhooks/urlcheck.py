"""Webhook URLs may only point at the public internet.

Without this check an account could make the server call its own admin,
the cloud metadata service (169.254.169.254) or anything on the private
network (SSRF), and read the start of the reply in its delivery log.

``resolve_target`` resolves the host once, refuses it when any of its
addresses is not public, and returns the address it checked. The delivery
connects to exactly that address (webhooks/transport.py): resolving again
when connecting would let a hostname answer a public address to the check
and a private one to the connection (DNS rebinding). The check runs when an
endpoint is saved and again, with that one resolution, before each delivery.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

import httpx
from django.conf import settings
from django.core.exceptions import ValidationError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# NAT64 (RFC 6052) carries an IPv4 address in its last 32 bits: a gateway
# would forward 64:ff9b::7f00:1 to 127.0.0.1.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def refused_address(ip: IPAddress) -> bool:
    """True for any address that is not plainly public: private, loopback,
    link-local, multicast, reserved, unspecified (IPv4 and IPv6), and IPv6
    forms that carry such an IPv4 address (mapped, 6to4, NAT64)."""
    embedded = _embedded_ipv4(ip)
    if embedded is not None and refused_address(embedded):
        return True
    return (
        not ip.is_global
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local)
    )


@dataclass(frozen=True)
class Target:
    """Where one delivery goes: the URL's parts and the one address checked."""

    scheme: str
    host: str  # ASCII (IDNA) host name, or an IP literal without brackets
    port: int
    path: str  # path and query, as written
    address: str  # the resolved address the request connects to

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def host_is_address(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True


def _parse(url: str) -> tuple[str, str, int, str]:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ValidationError(f"Invalid URL: {exc}", code="invalid") from None
    if parsed.scheme not in ("http", "https"):
        raise ValidationError("Only http and https URLs are allowed.", code="scheme")
    if not parsed.raw_host:
        raise ValidationError("The URL has no host.", code="invalid")
    if parsed.userinfo:
        raise ValidationError("Credentials in the URL are not allowed.", code="auth")
    host = parsed.raw_host.decode("ascii")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return parsed.scheme, host, port, parsed.raw_path.decode("ascii")


def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise ValidationError(
            f"The host {host!r} cannot be resolved.", code="dns"
        ) from None
    addresses = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise ValidationError(f"The host {host!r} cannot be resolved.", code="dns")
    return addresses


def resolve_target(url: str) -> Target:
    """Check the URL and resolve its host once; return the address to use.

    Every address the host resolves to must be public, unless
    WEBHOOKS_ALLOW_PRIVATE_NETWORKS is set (development and tests). The
    refusal does not name the address: it would tell the tenant what an
    internal name resolves to.
    """
    scheme, host, port, path = _parse(url)
    addresses = _resolve(host, port)
    if not settings.WEBHOOKS_ALLOW_PRIVATE_NETWORKS and any(
        refused_address(a) for a in addresses
    ):
        raise ValidationError(
            f"The host {host!r} resolves to a private, loopback, link-local or "
            "otherwise non-public address; webhooks go to public addresses only.",
            code="private",
        )
    return Target(scheme, host, port, path, str(addresses[0]))


def validate_webhook_url(url: str) -> None:
    """The model field's validator. With WEBHOOKS_ALLOW_PRIVATE_NETWORKS the
    host is not resolved at save time (a development host may be offline)."""
    if settings.WEBHOOKS_ALLOW_PRIVATE_NETWORKS:
        _parse(url)
        return
    resolve_target(url)
