"""The embedded nats-server applies the fsync policy it is given (read back from its own /varz)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from relisten_runtime.embedded import EmbeddedNats, free_port

pytestmark = pytest.mark.nats


def jetstream_config(sync_interval: str | None, store: Path) -> dict[str, object]:
    monitor = free_port()
    server = EmbeddedNats(store, port=free_port(), sync_interval=sync_interval, monitor_port=monitor).start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{monitor}/varz", timeout=10) as answer:
            config: dict[str, object] = json.load(answer)["jetstream"]["config"]
            return config
    finally:
        server.stop()


def test_always_fsyncs_every_write(tmp_path: Path) -> None:
    assert jetstream_config("always", tmp_path / "a").get("sync_always") is True


def test_an_interval_is_passed_through_and_unset_keeps_the_default(tmp_path: Path) -> None:
    assert jetstream_config("10s", tmp_path / "b")["sync_interval"] == 10 * 10**9
    default = jetstream_config(None, tmp_path / "c")
    assert default["sync_interval"] == 120 * 10**9 and not default.get("sync_always")
