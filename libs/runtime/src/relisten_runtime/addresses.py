"""Which hosts a job's ``callback_url`` may reach.

A callback URL comes from whoever submits the job, and the notifier POSTs to it from inside the
deployment. Where submitters are not trusted with the internal network
(``RELISTEN_CALLBACK_PRIVATE_ADDRESSES=deny``), callbacks to loopback, private, link-local, shared,
multicast, reserved or unspecified addresses are refused: by ingest when the URL names such an
address literally (or ``localhost``), by the notifier after resolving the host, just before sending.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Literal
from urllib.parse import urlsplit

PrivateAddresses = Literal["allow", "deny"]


def is_internal(address: str) -> bool:
    """True for an IP address that is not a public unicast address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def literal_internal_host(url: str) -> str | None:
    """The host of ``url`` when it is ``localhost`` or an internal IP literal, else None (no DNS)."""
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return host
    try:
        return host if is_internal(host) else None
    except ValueError:
        return None


async def internal_address_of(url: str) -> str | None:
    """The first internal address the host of ``url`` resolves to, else None.

    Resolution errors return None: the HTTP client then reports the failure as a delivery error.
    """
    parts = urlsplit(url)
    literal = literal_internal_host(url)
    if literal is not None:
        return literal
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return None
    for _family, _type, _proto, _canonical, sockaddr in infos:
        address = str(sockaddr[0])
        if is_internal(address):
            return address
    return None
