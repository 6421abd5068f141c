"""OpenAI's realtime transcription protocol as relisten speaks it: the session configuration a client
may set (``session.update``), its echo (``session.created`` / ``session.updated``), and the shape of
server events. Pure.

The GA shape is ``{"type": "session.update", "session": {"type": "transcription", "audio": {"input":
{"format", "transcription", "turn_detection", "noise_reduction"}}, "include"}}``. The older beta shape
(``transcription_session.update`` with ``input_audio_format``, ``input_audio_transcription`` and
``turn_detection`` at the top of ``session``) is read too and answered as ``transcription_session.updated``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Final

from relisten_ingest.realtime_audio import AudioFormat, VadSettings

LOGPROBS: Final = "item.input_audio_transcription.logprobs"
DEFAULT_MODEL: Final = "relisten"
PCM_RATES: Final = (24000, 16000)
BETA_FORMATS: Final = {
    "pcm16": AudioFormat("audio/pcm", 24000),
    "g711_ulaw": AudioFormat("audio/pcmu", 8000),
    "g711_alaw": AudioFormat("audio/pcma", 8000),
}


class ConfigError(ValueError):
    """A ``session.update`` this server cannot take; ``param`` names the field."""

    def __init__(self, message: str, param: str, code: str = "invalid_session_config") -> None:
        super().__init__(message)
        self.param = param
        self.code = code


@dataclass(frozen=True)
class SessionConfig:
    format: AudioFormat = field(default_factory=AudioFormat)
    model: str = DEFAULT_MODEL
    language: str | None = None
    prompt: str | None = None
    vad: VadSettings | None = field(default_factory=VadSettings)
    """None: ``turn_detection`` is null, the client commits."""
    logprobs: bool = False
    noise_reduction: Any = None
    """Echoed as sent; relisten does no noise reduction."""


def _object(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{param} must be an object", param)
    return value


def _format(value: Any, param: str) -> AudioFormat:
    if isinstance(value, str) and value in BETA_FORMATS:
        return BETA_FORMATS[value]
    spec = _object(value, param)
    kind = spec.get("type", "audio/pcm")
    if kind == "audio/pcm":
        rate = spec.get("rate", 24000)
        if rate not in PCM_RATES:
            raise ConfigError(f"audio/pcm is taken at 24000 or 16000 Hz, not {rate!r}", f"{param}.rate")
        return AudioFormat("audio/pcm", int(rate))
    if kind in ("audio/pcmu", "audio/pcma"):
        return AudioFormat(kind, 8000)
    raise ConfigError(
        f"unsupported audio format {kind!r}: audio/pcm, audio/pcmu or audio/pcma", f"{param}.type"
    )


def _number(spec: dict[str, Any], name: str, default: float, low: float, high: float, param: str) -> float:
    value = spec.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ConfigError(f"{name} must be a number within [{low:g}, {high:g}]", f"{param}.{name}")
    return float(value)


def _turn_detection(value: Any, current: VadSettings | None, param: str) -> VadSettings | None:
    if value is None:
        return None
    spec = _object(value, param)
    kind = spec.get("type", "server_vad")
    if kind not in ("server_vad", "semantic_vad"):
        raise ConfigError(f"unsupported turn_detection type {kind!r}", f"{param}.type")
    # semantic_vad has no parameters of its own that an energy detector could honour: the defaults apply.
    base = current if current is not None and kind == "server_vad" else VadSettings()
    if kind == "semantic_vad":
        return base
    return dataclasses.replace(
        base,
        threshold=_number(spec, "threshold", base.threshold, 0.0, 1.0, param),
        prefix_padding_ms=int(_number(spec, "prefix_padding_ms", base.prefix_padding_ms, 0, 5000, param)),
        silence_duration_ms=int(
            _number(spec, "silence_duration_ms", base.silence_duration_ms, 100, 10000, param)
        ),
    )


def _transcription(value: Any, config: SessionConfig, param: str, max_prompt: int) -> SessionConfig:
    if value is None:
        return config
    spec = _object(value, param)
    changes: dict[str, Any] = {}
    if "model" in spec:
        if spec["model"] is not None and not isinstance(spec["model"], str):
            raise ConfigError("model must be a string", f"{param}.model")
        changes["model"] = spec["model"] or DEFAULT_MODEL
    if "language" in spec:
        language = spec["language"]
        if language is not None and (not isinstance(language, str) or not 2 <= len(language.strip()) <= 8):
            raise ConfigError("language must be an ISO-639-1 code such as 'en'", f"{param}.language")
        changes["language"] = language.strip().lower() if language else None
    if "prompt" in spec:
        prompt = spec["prompt"]
        if prompt is not None and not isinstance(prompt, str):
            raise ConfigError("prompt must be a string", f"{param}.prompt")
        if prompt and len(prompt) > max_prompt:
            raise ConfigError(f"prompt is longer than {max_prompt} characters", f"{param}.prompt")
        changes["prompt"] = prompt or None
    return dataclasses.replace(config, **changes)


def _include(value: Any, param: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, list) or any(item != LOGPROBS for item in value):
        raise ConfigError(f"include may only hold {LOGPROBS!r}", param)
    return LOGPROBS in value


def apply_update(config: SessionConfig, session: Any, *, beta: bool, max_prompt: int) -> SessionConfig:
    """``config`` with the fields present in a ``session.update``'s ``session`` (absent fields keep
    their value; ``turn_detection: null`` turns server VAD off). :class:`ConfigError` on a bad field."""
    spec = _object(session, "session")
    kind = spec.get("type", "transcription")
    if kind != "transcription":
        raise ConfigError(
            f"this server only runs transcription sessions, not {kind!r}",
            "session.type",
            "unsupported_session_type",
        )
    if beta:
        audio_in: dict[str, Any] = {}
        for key, name in (
            ("input_audio_format", "format"),
            ("input_audio_transcription", "transcription"),
            ("turn_detection", "turn_detection"),
            ("input_audio_noise_reduction", "noise_reduction"),
        ):
            if key in spec:
                audio_in[name] = spec[key]
        prefix = "session"
    else:
        audio = _object(spec.get("audio", {}), "session.audio")
        audio_in = _object(audio.get("input", {}), "session.audio.input")
        prefix = "session.audio.input"
    if "format" in audio_in:
        config = dataclasses.replace(config, format=_format(audio_in["format"], f"{prefix}.format"))
    if "transcription" in audio_in:
        config = _transcription(audio_in["transcription"], config, f"{prefix}.transcription", max_prompt)
    if "turn_detection" in audio_in:
        config = dataclasses.replace(
            config, vad=_turn_detection(audio_in["turn_detection"], config.vad, f"{prefix}.turn_detection")
        )
    if "noise_reduction" in audio_in:
        config = dataclasses.replace(config, noise_reduction=audio_in["noise_reduction"])
    if "include" in spec:
        config = dataclasses.replace(config, logprobs=_include(spec["include"], "session.include"))
    return config


def _format_object(fmt: AudioFormat) -> dict[str, Any]:
    if fmt.type == "audio/pcm":
        return {"type": fmt.type, "rate": fmt.rate}
    return {"type": fmt.type}


def _vad_object(vad: VadSettings | None) -> dict[str, Any] | None:
    if vad is None:
        return None
    return {
        "type": "server_vad",
        "threshold": vad.threshold,
        "prefix_padding_ms": vad.prefix_padding_ms,
        "silence_duration_ms": vad.silence_duration_ms,
    }


def session_object(config: SessionConfig, session_id: str, relisten: dict[str, Any]) -> dict[str, Any]:
    """The session as ``session.created`` / ``session.updated`` show it, with relisten's own facts
    (the job id the session becomes, whether turns are refined) under ``relisten``."""
    return {
        "id": session_id,
        "object": "realtime.transcription_session",
        "type": "transcription",
        "audio": {
            "input": {
                "format": _format_object(config.format),
                "transcription": {
                    "model": config.model,
                    "language": config.language,
                    "prompt": config.prompt,
                },
                "turn_detection": _vad_object(config.vad),
                "noise_reduction": config.noise_reduction,
            }
        },
        "include": [LOGPROBS] if config.logprobs else [],
        "relisten": relisten,
    }


def beta_session_object(config: SessionConfig, session_id: str, relisten: dict[str, Any]) -> dict[str, Any]:
    """The same session in the beta ``transcription_session`` shape."""
    beta_format = next((name for name, fmt in BETA_FORMATS.items() if fmt == config.format), "pcm16")
    return {
        "id": session_id,
        "object": "realtime.transcription_session",
        "input_audio_format": beta_format,
        "input_audio_transcription": {
            "model": config.model,
            "language": config.language,
            "prompt": config.prompt,
        },
        "turn_detection": _vad_object(config.vad),
        "input_audio_noise_reduction": config.noise_reduction,
        "include": [LOGPROBS] if config.logprobs else [],
        "relisten": relisten,
    }


def error_event(
    event_id: str,
    code: str,
    message: str,
    *,
    kind: str = "invalid_request_error",
    param: str | None = None,
    client_event_id: str | None = None,
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "error",
        "error": {
            "type": kind,
            "code": code,
            "message": message,
            "param": param,
            "event_id": client_event_id,
        },
    }
