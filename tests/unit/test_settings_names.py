"""The services' old variable names (before RELISTEN_<SERVICE>_<FIELD>) still configure them; asr and
corrector, always prefixed, never read an unprefixed name."""

from __future__ import annotations

import pytest
from relisten_asr.settings import AsrSettings
from relisten_clipper.settings import ClipperSettings
from relisten_corrector.settings import CorrectorSettings
from relisten_ingest.settings import IngestSettings
from relisten_merger.settings import MergerSettings
from relisten_notifier.settings import NotifierSettings
from relisten_runtime import settings as settings_module


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings_module, "_warned", set())


def test_old_names_still_work(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELISTEN_API_KEYS", "k1,k2")
    monkeypatch.setenv("RELISTEN_CLUSTER_GAP_S", "2.5")
    monkeypatch.setenv("RELISTEN_MAX_DRIFT", "0.3")
    monkeypatch.setenv("RELISTEN_NOTIFY_SCHEDULE", "1s,2m")
    assert [key.get_secret_value() for key in IngestSettings().api_keys] == ["k1", "k2"]
    assert ClipperSettings().cluster_gap_s == 2.5
    assert MergerSettings().max_drift == 0.3
    assert NotifierSettings().notify_schedule == (1.0, 120.0)


def test_new_names_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELISTEN_MAX_DRIFT", "0.3")
    monkeypatch.setenv("RELISTEN_MERGER_MAX_DRIFT", "0.7")
    monkeypatch.setenv("RELISTEN_INGEST_PORT", "8123")
    monkeypatch.setenv("RELISTEN_PORT", "9000")
    assert MergerSettings().max_drift == 0.7
    assert IngestSettings().port == 8123


@pytest.mark.parametrize(
    ("settings_cls", "kind", "default", "remote"),
    [
        (AsrSettings, "engine", "faster-whisper", "openai"),
        (CorrectorSettings, "backend", "faster-whisper", "vllm"),
    ],
)
def test_speech_services_read_only_their_own_prefix(
    monkeypatch: pytest.MonkeyPatch,
    settings_cls: type[AsrSettings | CorrectorSettings],
    kind: str,
    default: str,
    remote: str,
) -> None:
    """A plain RELISTEN_API_KEY (meant for the API's clients) or RELISTEN_BASE_URL never reaches a model
    server; shared fields stay RELISTEN_<FIELD>."""
    prefix = f"RELISTEN_{settings_cls.service.upper()}_"  # type: ignore[union-attr]
    monkeypatch.setenv("RELISTEN_API_KEY", "ingest-key-must-not-leak")
    monkeypatch.setenv("RELISTEN_BASE_URL", "http://wrong:1")
    monkeypatch.setenv(f"RELISTEN_{kind.upper()}", remote)
    monkeypatch.setenv("RELISTEN_BEAM_SIZE", "2")
    monkeypatch.setenv("RELISTEN_MAX_DELIVER", "7")
    monkeypatch.setenv(f"{prefix}BATCH_SIZE", "3")
    settings = settings_cls()
    assert settings.api_key is None
    assert settings.base_url == "http://127.0.0.1:8000"
    assert getattr(settings, kind) == default
    assert (settings.beam_size, settings.batch_size, settings.max_deliver) == (5, 3, 7)

    monkeypatch.setenv(f"{prefix}API_KEY", "gpu-key")
    monkeypatch.setenv(f"{prefix}BASE_URL", "http://gpu:8000")
    settings = settings_cls()
    assert settings.api_key_value() == "gpu-key"
    assert settings.base_url == "http://gpu:8000"
