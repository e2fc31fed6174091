"""The one HTTP request of a webhook attempt.

Two rules shape it:

* It goes to exactly the address ``urlcheck.resolve_target`` checked. The
  URL's host still names the server: it is the Host header, the TLS server
  name (SNI), and the name the certificate is verified against. Nothing here
  resolves the host again, so a DNS answer that changes after the check
  (rebinding) cannot redirect the request to a private address.
* It has one total deadline, connect, send and read together, and reads at
  most ``MAX_READ_BYTES`` of the reply. A client's own timeouts apply to each
  socket operation, so an endpoint that trickles a byte at a time would hold
  a delivery worker for as long as it liked.

httpx, because both rules are its public API: the ``sni_hostname`` request
extension sends a request to one address while TLS names another host, with
no reaching into a connection pool's internals; and its async client can be
cancelled as a whole, which ``asyncio.timeout`` does at the deadline.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

import certifi
import httpx

from webhooks.urlcheck import Target

# What is read of a reply (its start), so a huge or endless body costs
# nothing; the delivery log keeps a shorter excerpt of it.
MAX_READ_BYTES = 1024


class DeliveryTimeout(Exception):
    """The deadline passed before the reply's status and first bytes came."""


class DeliveryError(Exception):
    """The request could not be made or answered (refused connection, TLS
    failure, broken reply)."""


@dataclass(frozen=True)
class Reply:
    status_code: int
    head: bytes  # at most MAX_READ_BYTES of the body


def tls_context() -> ssl.SSLContext:
    """Certificates are verified against the URL's host name."""
    return ssl.create_default_context(cafile=certifi.where())


async def _exchange(
    target: Target, *, body: bytes, headers: dict[str, str], deadline: float
) -> Reply:
    url = httpx.URL(
        scheme=target.scheme,
        host=target.address,
        port=target.port,
        raw_path=target.path.encode("ascii"),
    )
    extensions = {}
    if target.scheme == "https" and not target.host_is_address:
        extensions["sni_hostname"] = target.host
    async with httpx.AsyncClient(
        verify=tls_context(),
        # No proxy from the environment: it would resolve the host itself.
        trust_env=False,
        follow_redirects=False,  # a redirect could lead anywhere
        timeout=deadline,
    ) as client:
        request = client.build_request(
            "POST",
            url,
            content=body,
            headers={**headers, "Host": target.host_header},
            extensions=extensions,
        )
        response = await client.send(request, stream=True)
        try:
            head = b""
            # Raw: no decompression, so a small compressed body cannot grow.
            async for chunk in response.aiter_raw():
                head += chunk
                if len(head) >= MAX_READ_BYTES:
                    break
        finally:
            await response.aclose()
    return Reply(response.status_code, head[:MAX_READ_BYTES])


def post(
    target: Target, *, body: bytes, headers: dict[str, str], deadline: float
) -> Reply:
    """POST ``body`` to ``target``; give up when ``deadline`` seconds have
    passed since the call, whatever the request was doing."""

    async def bounded() -> Reply:
        async with asyncio.timeout(deadline):
            return await _exchange(
                target, body=body, headers=headers, deadline=deadline
            )

    try:
        return asyncio.run(bounded())
    except TimeoutError:
        raise DeliveryTimeout(f"no reply within the {deadline:g} s deadline") from None
    except httpx.TimeoutException:
        raise DeliveryTimeout(f"no reply within the {deadline:g} s deadline") from None
    except (httpx.HTTPError, ssl.SSLError, OSError) as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}"[:500]) from None
