"""The corrector refuses, at start, a remote second pass that is relisten's own API."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from relisten_corrector.settings import CorrectorSettings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "RELISTEN_PORT",
        "RELISTEN_INGEST_PORT",
        "RELISTEN_CORRECTOR_BASE_URL",
        "RELISTEN_CORRECTOR_BACKEND",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("backend", ["openai", "vllm"])
def test_a_remote_backend_on_relistens_own_port_is_refused(backend: str) -> None:
    with pytest.raises(ValidationError, match=r"RELISTEN_CORRECTOR_BASE_URL=\S+ is relisten's own API"):
        CorrectorSettings(backend=backend)
    with pytest.raises(ValidationError, match="own API"):
        CorrectorSettings(backend=backend, base_url="http://[::1]:8000")
    assert CorrectorSettings(backend=backend, base_url="http://127.0.0.1:8002").backend == backend


def test_the_local_backend_does_not_care() -> None:
    assert CorrectorSettings(backend="faster-whisper").backend == "faster-whisper"
