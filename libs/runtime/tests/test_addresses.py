"""Which callback hosts count as internal."""

from __future__ import annotations

import pytest
from relisten_runtime.addresses import internal_address_of, is_internal, literal_internal_host


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
