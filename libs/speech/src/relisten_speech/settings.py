"""The settings of a speech model, shared by asr and corrector: device, compute type, threads, beam,
where the bundled model is assembled, and how to reach a remote speech server (key, backoff).

Each service reads them under its own prefix (``RELISTEN_ASR_DEVICE``, ``RELISTEN_CORRECTOR_DEVICE``, ...):
a first and a second pass often run different models on different hardware.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from relisten_runtime.addresses import refuse_own_api
from relisten_runtime.settings import CommonSettings, env_name

from relisten_speech.models import default_model_cache_dir


class SpeechModelSettings(CommonSettings):
    """What asr and corrector both set about a faster-whisper model in process or a speech server
    (each under its own prefix: ``RELISTEN_ASR_DEVICE``, ``RELISTEN_CORRECTOR_DEVICE``, ...)."""

    device: str = Field("cpu", description="faster-whisper device: cpu, cuda or auto.")
    compute_type: str = Field(
        "int8", description="CTranslate2 compute type for faster-whisper (int8 on CPU)."
    )
    cpu_threads: int = Field(
        0, ge=0, description="CPU threads for faster-whisper; 0: one per CPU available, at most 4."
    )
    beam_size: int = Field(5, ge=1, description="Beam size of the faster-whisper decoder.")
    model_cache_dir: Path = Field(
        default_factory=default_model_cache_dir,
        json_schema_extra={"shown_default": "`$XDG_CACHE_HOME/relisten/models` (`~/.cache/...`)"},
        description="Where the bundled Whisper base is assembled once (its model.bin ships in two parts).",
    )
    api_key: SecretStr | None = Field(
        None, description="Bearer token for the remote speech server, if it wants one."
    )
    backoff_s: float = Field(
        1.0, ge=0, description="First pause between HTTP attempts; doubles each time, with jitter."
    )
    base_url: str = Field(
        "http://127.0.0.1:8000",
        description="Root of the remote speech server; a trailing /v1 is accepted. relisten's own API "
        "(RELISTEN_INGEST_PORT on a loopback address) is refused at start: every job would send its audio back "
        "to relisten as a new job.",
    )
    timeout_s: float = Field(
        60.0, gt=0, description="Timeout of one HTTP attempt (connect, send, wait, read)."
    )
    max_attempts: int = Field(3, ge=1, description="HTTP attempts before the request is given up.")

    def uses_server(self) -> bool:
        """Whether the configured engine calls the server at ``base_url`` (each service says)."""
        return False

    @model_validator(mode="after")
    def _not_relisten_itself(self) -> SpeechModelSettings:
        if self.uses_server():
            refuse_own_api(self.base_url, env_name(type(self), "base_url"), os.environ)
        return self

    def api_key_value(self) -> str | None:
        return self.api_key.get_secret_value() if self.api_key else None


def model_cpu_threads(configured: int) -> int:
    """Threads for an in-process model: ``configured``, or for 0 one per CPU this process may use, at
    most 4. (CTranslate2's own default is 4 whatever the machine; on 2 cores that oversubscribes, and
    the benchmark measured the pipeline 12 % faster with 2.)"""
    if configured > 0:
        return configured
    return max(1, min(4, len(os.sched_getaffinity(0))))
