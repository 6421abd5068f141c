"""The asr service refuses, at start, a remote first pass that is relisten's own API."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError
from relisten_asr.settings import AsrSettings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RELISTEN_PORT", "RELISTEN_INGEST_PORT", "RELISTEN_ASR_BASE_URL", "RELISTEN_ASR_ENGINE"):
        monkeypatch.delenv(name, raising=False)


def test_the_default_base_url_is_refused_for_the_openai_engine() -> None:
    with pytest.raises(
        ValidationError, match=re.escape("RELISTEN_ASR_BASE_URL=http://127.0.0.1:8000 is relisten's own API")
    ):
        AsrSettings(engine="openai")


def test_relisten_on_another_port_is_taken_into_account(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELISTEN_PORT", "9100")
    assert AsrSettings(engine="openai").base_url == "http://127.0.0.1:8000"  # a speaches on 8000: fine
    monkeypatch.setenv("RELISTEN_ASR_BASE_URL", "http://localhost:9100/v1")
    with pytest.raises(ValidationError, match="RELISTEN_PORT=9100"):
        AsrSettings(engine="openai")


def test_the_local_engine_does_not_care() -> None:
    assert AsrSettings(engine="faster-whisper").engine == "faster-whisper"
    assert AsrSettings(engine="openai", base_url="http://127.0.0.1:8001").engine == "openai"
