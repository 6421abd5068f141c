"""Which callback hosts count as internal; URLs shown without secrets; URLs that are relisten itself."""

from __future__ import annotations

import pytest
from relisten_runtime.addresses import (
    internal_address_of,
    is_internal,
    literal_internal_host,
    points_at_port_here,
    redact_url,
    refuse_own_api,
    scrub_credentials,
    without_credentials,
)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.9",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "::1",
        "fc00::1",
        "fe80::1%eth0",
        "::ffff:10.0.0.1",
    ],
)
def test_internal_addresses(address: str) -> None:
    assert is_internal(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses(address: str) -> None:
    assert not is_internal(address)


def test_literal_hosts_are_judged_without_dns() -> None:
    assert literal_internal_host("http://localhost:8080/hook") == "localhost"
    assert literal_internal_host("http://api.localhost/hook") == "api.localhost"
    assert literal_internal_host("http://[::1]:9000/") == "::1"
    assert literal_internal_host("https://169.254.169.254/latest/meta-data") == "169.254.169.254"
    assert literal_internal_host("https://hooks.example.com/x") is None
    assert literal_internal_host("https://8.8.8.8/x") is None


async def test_resolution() -> None:
    assert await internal_address_of("http://127.0.0.1:1/") == "127.0.0.1"
    assert await internal_address_of("http://localhost/") == "localhost"
    # A name that does not resolve is left to the HTTP client to report.
    assert await internal_address_of("http://no-such-host.invalid/") is None


def test_redact_url_keeps_where_and_drops_secrets() -> None:
    assert redact_url("https://user:pw@hooks.example.com/x?token=abc#frag") == "https://hooks.example.com/x"
    assert redact_url("http://[::1]:8080/hook?sig=1") == "http://[::1]:8080/hook"
    assert redact_url("https://hooks.example.com") == "https://hooks.example.com"


def test_nats_urls_without_credentials() -> None:
    shown = without_credentials("nats://alice:s3cret@a:4222, nats://tok3n@b:4222,c:4222")
    assert shown == "nats://a:4222,nats://b:4222,c:4222"
    text = "connect failed for nats://alice:s3cret@a:4222 (alice)"
    scrubbed = scrub_credentials(text, "nats://alice:s3cret@a:4222,nats://tok3n@b:4222")
    assert "s3cret" not in scrubbed and "alice" not in scrubbed
    assert scrub_credentials("no secrets here", "nats://a:4222") == "no secrets here"


@pytest.mark.parametrize(
    ("url", "port", "expected"),
    [
        ("http://127.0.0.1:8000", 8000, True),
        ("http://localhost:8000/v1", 8000, True),
        ("http://[::1]:8000", 8000, True),
        ("http://0.0.0.0:8000", 8000, True),
        ("http://127.0.0.2:8000", 8000, True),
        ("http://localhost", 80, True),
        ("http://127.0.0.1:8001", 8000, False),
        ("http://gpu:8000", 8000, False),
        ("http://10.0.0.5:8000", 8000, False),
        ("https://api.openai.com", 443, False),
    ],
)
def test_points_at_port_here(url: str, port: int, expected: bool) -> None:
    assert points_at_port_here(url, port) is expected


def test_refuse_own_api_names_the_setting_and_the_port() -> None:
    with pytest.raises(
        ValueError, match="RELISTEN_ASR_BASE_URL=http://localhost:9000/v1 is relisten's own API"
    ):
        refuse_own_api("http://key:pw@localhost:9000/v1", "RELISTEN_ASR_BASE_URL", {"RELISTEN_PORT": "9000"})
    refuse_own_api("http://localhost:8000", "X", {"RELISTEN_PORT": "9000"})  # another port: fine
    with pytest.raises(ValueError, match="RELISTEN_INGEST_PORT=8000"):
        refuse_own_api("http://127.0.0.1:8000", "X", {})  # the API port's default
    with pytest.raises(ValueError, match="RELISTEN_INGEST_PORT=9001"):
        refuse_own_api(
            "http://127.0.0.1:9001", "X", {"RELISTEN_INGEST_PORT": "9001", "RELISTEN_PORT": "9000"}
        )
