"""Which hosts a job's ``callback_url`` may reach; URLs fit to show (no credentials); remote servers
that would be relisten itself.

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
from collections.abc import Mapping
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

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


# --------------------------------------------------------------------------------------------------
# Secrets in URLs, and URLs that lead back to relisten itself


def redact_url(url: str) -> str:
    """``url`` without its user, password, query and fragment (where tokens ride): fit to show and log.

    ``https://user:pw@hooks.example.com/x?token=abc`` -> ``https://hooks.example.com/x``."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def without_credentials(urls: str) -> str:
    """A comma-separated server list (``RELISTEN_NATS_URL``) with every user, password or token
    removed: ``nats://user:pw@a:4222,nats://b:4222`` -> ``nats://a:4222,nats://b:4222``."""
    shown = []
    for url in urls.split(","):
        url = url.strip()
        if "@" in url:
            scheme, sep, rest = url.rpartition("://")
            url = f"{scheme}{sep}{rest.rpartition('@')[2]}"
        shown.append(url)
    return ",".join(shown)


def scrub_credentials(text: str, urls: str) -> str:
    """``text`` with the user and password of every URL in ``urls`` replaced by ``***`` (for error
    messages that may quote what a client library was given)."""
    for url in urls.split(","):
        parts = urlsplit(url.strip() if "://" in url else f"nats://{url.strip()}")
        for secret in (parts.password, parts.username):
            if secret:
                text = text.replace(secret, "***")
    return text


LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


def is_loopback_host(host: str) -> bool:
    """``localhost`` or a loopback or unspecified (``0.0.0.0``, ``::``) address: this machine."""
    host = host.rstrip(".").lower()
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_unspecified


def points_at_port_here(url: str, port: int) -> bool:
    """True when ``url`` reaches ``port`` on this machine over loopback."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    try:
        target = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return False
    return target == port and is_loopback_host(parts.hostname or "")


def refuse_own_api(url: str, setting: str, environ: Mapping[str, str]) -> None:
    """Raise :class:`ValueError` when ``url`` is relisten's own HTTP API (``RELISTEN_INGEST_PORT``, or
    its deprecated name ``RELISTEN_PORT``, on loopback).

    A remote first or second pass pointed there would post every job's audio back to relisten as a
    new job, which would do the same: a loop that fills the queue and never answers."""
    variable = (
        "RELISTEN_PORT"
        if environ.get("RELISTEN_PORT") and not environ.get("RELISTEN_INGEST_PORT")
        else "RELISTEN_INGEST_PORT"
    )
    try:
        own_port = int(environ.get(variable, "") or 8000)
    except ValueError:
        return
    if points_at_port_here(url, own_port):
        raise ValueError(
            f"{setting}={redact_url(url)} is relisten's own API ({variable}={own_port} on this "
            "machine): it must name the transcription server to call, e.g. http://127.0.0.1:8001 "
            "for a speaches or vLLM server on port 8001"
        )
