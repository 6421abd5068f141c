"""One naming scheme: shared fields RELISTEN_<FIELD>, a service's own RELISTEN_<SERVICE>_<FIELD>; the old
unprefixed names of a service that had them still read, the new name winning, each logged once."""

from __future__ import annotations

import logging
from typing import ClassVar

import pytest
from pydantic import Field
from relisten_runtime import settings as settings_module
from relisten_runtime.settings import CommonSettings, deprecated_env_name, env_name


class DemoSettings(CommonSettings):
    service: ClassVar[str | None] = "demo"
    deprecated_unprefixed: ClassVar[bool] = True

    limit: int = Field(1, description="A demo knob.")


class NewOnlySettings(CommonSettings):
    service: ClassVar[str | None] = "fresh"

    limit: int = Field(1, description="A demo knob.")


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RELISTEN_LIMIT", "RELISTEN_DEMO_LIMIT", "RELISTEN_FRESH_LIMIT", "RELISTEN_NATS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(settings_module, "_warned", set())


def test_names() -> None:
    assert env_name(DemoSettings, "limit") == "RELISTEN_DEMO_LIMIT"
    assert env_name(DemoSettings, "nats_url") == "RELISTEN_NATS_URL"
    assert deprecated_env_name(DemoSettings, "limit") == "RELISTEN_LIMIT"
    assert deprecated_env_name(DemoSettings, "nats_url") is None
    assert deprecated_env_name(NewOnlySettings, "limit") is None


def test_own_fields_are_read_under_the_service_prefix_shared_ones_without(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RELISTEN_DEMO_LIMIT", "7")
    monkeypatch.setenv("RELISTEN_NATS_URL", "nats://shared:4222")
    monkeypatch.setenv("RELISTEN_DEMO_NATS_URL", "nats://not-this:4222")
    settings = DemoSettings()
    assert (settings.limit, settings.nats_url) == (7, "nats://shared:4222")
    assert DemoSettings(limit=3).limit == 3


def test_an_old_name_still_works_and_is_logged_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("RELISTEN_LIMIT", "5")
    with caplog.at_level(logging.WARNING, logger="relisten_runtime.settings"):
        assert DemoSettings().limit == 5
        assert DemoSettings().limit == 5
    warnings = [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()]
    assert warnings == ["RELISTEN_LIMIT is deprecated and will stop working: set RELISTEN_DEMO_LIMIT instead"]


def test_the_new_name_wins_without_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("RELISTEN_LIMIT", "5")
    monkeypatch.setenv("RELISTEN_DEMO_LIMIT", "9")
    with caplog.at_level(logging.WARNING, logger="relisten_runtime.settings"):
        assert DemoSettings().limit == 9
    assert not [r for r in caplog.records if "deprecated" in r.getMessage()]


def test_a_service_without_old_names_ignores_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELISTEN_LIMIT", "5")
    assert NewOnlySettings().limit == 1
