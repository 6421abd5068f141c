"""Which language a job is spoken in, which first pass can hear it, and whether the second pass follows.

The first-pass model is usually English-only (tiny.en): given Spanish it writes fluent English
nonsense, confidently. So, for every job:

1. **Identify** the spoken language when the job does not name it: the multilingual model (bundled
   Whisper base, loaded on first need) listens to a few 10 s windows of *speech* spread through the
   recording (not only the first 30 s, which may be music or a greeting in another language) and the
   windows' probabilities are averaged; each window's own answer is kept, and windows that confidently
   disagree mark the recording as mixed-language.
2. **Route** (:func:`route`, pure): a language the first-pass model knows goes to it (English: tiny.en,
   then base on the doubtful stretches, as always); any other language Whisper knows goes to the
   multilingual model, and skips the second pass unless one set up for other languages is configured
   (the bundled base would only hear the same thing again); ``task=translate`` goes to the multilingual
   model's translate task. A language nothing configured can transcribe is refused
   (``unsupported_language``), never transcribed as English.
3. **Guard**: a first pass with many unsure words is checked against the language identification; if the
   speech is confidently another language the job is re-routed (when the language was not named) or
   flagged (when it was: the user's choice is honoured, and told). What remains suspicious becomes a
   :class:`~relisten_contracts.JobWarning`.

Everything the decision rests on (detection, route, reason) is recorded in the first pass and carried
into the transcript.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec
import numpy as np
from relisten_contracts import (
    AsrCapabilities,
    FirstPass,
    JobOptions,
    JobWarning,
    LanguageCandidate,
    LanguageDetection,
    LanguageWindow,
    Routing,
)
from relisten_runtime.audio import SAMPLE_RATE
from relisten_speech.errors import SpeechError as EngineError
from relisten_speech.models import display_name

from relisten_asr.engines import FasterWhisperEngine, FirstPassEngine, ProgressCallback
from relisten_asr.settings import AsrSettings

log = logging.getLogger(__name__)

WINDOW_S: Final = 10.0
"""Speech per identification window. Whisper hears up to 30 s at once, but a language is clear from a
few seconds: 10 s of speech plus the encoder padding costs about half a 30 s encoder pass."""
MIN_SPEECH_S: Final = 1.0
"""Less speech than this (VAD) and the whole audio is heard instead: better a guess than none."""
CANDIDATES: Final = 5
WHISPER_FRAMES: Final = 3000
"""Log-mel frames (10 ms) of Whisper's 30 s input."""
ENCODER_PADDING_S: Final = 8.0
AGREEING: Final = 0.9
"""When the first and the last window are both this sure of one language, the others are not heard."""
CONFIDENT_WINDOW: Final = 0.5
"""A window's answer counts towards "mixed language" only when it is at least this sure."""
REROUTE_PROBABILITY: Final = 0.8
"""The identification must be this sure before it overrides a first pass's own language."""
UNSURE_WORD: Final = 0.5
SUSPICIOUS: Final = 0.3
"""A first pass with at least this share of its words below ``UNSURE_WORD`` has its language checked.

Measured with tiny.en (beam 5): 28 English LibriSpeech and LibriVox clips had at most 12 % of their
words unsure; Spanish, German, French, Italian, Portuguese, Japanese and Korean speech, which tiny.en
turns into English, had 36 % to 77 %."""
REGIONAL_SUSPICIOUS: Final = 0.45
"""A 30 s stretch (of at least ``MIN_WORDS_IN_REGION`` words) with this share of unsure words has the
language checked too: a recording mostly in English with a part in another language. English copies
degraded to telephone band, mp3 and 1.1x speed reached 0.32 at most."""
REGION_S: Final = 30.0
MIN_WORDS_IN_REGION: Final = 8
MIN_WORDS_TO_JUDGE: Final = 12
"""Fewer first-pass words than this and the shares above say nothing: the language is checked (on a
short recording identification costs one short encoder pass). A French clip came out of tiny.en as
four words, "Thank you very much.", too few for any share."""
SLOWEST_SPEECH_WPS: Final = 1.0
"""Fewer words than this per second of speech (VAD) and the text cannot be what was said: an English-only
model given another language often writes a short stock phrase for a long stretch. English read speech,
clean or degraded, gave at least 1.8."""
MOSTLY_UNSURE: Final = 0.5
"""A first pass with more than this share of its words unsure is reported as mostly unsure."""
MIN_WORDS_FOR_UNSURE: Final = 5


def whisper_languages() -> frozenset[str]:
    """Every language code Whisper's multilingual models know (faster-whisper's own table)."""
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return frozenset(_LANGUAGE_CODES)


def declared_languages(model: str) -> frozenset[str]:
    """What a model setting can transcribe, judged by its name before it is loaded: Whisper's English-only
    models are the ``*.en`` ones (``bundled:tiny.en``, ``small.en``, ``Systran/faster-whisper-small.en``);
    the others know every Whisper language. A loaded model's own flag has the last word
    (:func:`loaded_languages`)."""
    name = display_name(model.rstrip("/")).lower()
    return frozenset({"en"}) if name.endswith(".en") else whisper_languages()


def loaded_languages(model: Any) -> frozenset[str]:
    """What a loaded faster-whisper model can transcribe."""
    if not model.model.is_multilingual:
        return frozenset({"en"})
    return frozenset(model.supported_languages)


# --- identification ------------------------------------------------------------------------------


def speech_spans(audio: np.ndarray) -> list[tuple[int, int]]:
    """Sample ranges of speech (Silero VAD, as faster-whisper's own ``vad_filter``)."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    return [(int(s["start"]), int(s["end"])) for s in get_speech_timestamps(audio, VadOptions())]


def speech_seconds(audio: np.ndarray) -> float:
    return sum(end - start for start, end in speech_spans(audio)) / SAMPLE_RATE


def pick_windows(
    spans: Sequence[tuple[int, int]], total: int, count: int, window: int
) -> list[list[tuple[int, int]]]:
    """Up to ``count`` windows of at most ``window`` samples of speech, spread evenly over all the speech.

    Speech is laid end to end (pauses removed); windows start at evenly spaced points of that, and each
    window is returned as the pieces of the original audio it is made of. Without enough speech the whole
    audio is one window.
    """
    spans = [(start, end) for start, end in spans if end > start]
    speech = sum(end - start for start, end in spans)
    if speech < MIN_SPEECH_S * SAMPLE_RATE:
        return [[(0, min(total, window))]] if total > 0 else []
    count = max(1, min(count, math.ceil(speech / window)))
    starts = [0] if count == 1 else [round(i * (speech - window) / (count - 1)) for i in range(count)]
    windows: list[list[tuple[int, int]]] = []
    for offset in starts:
        pieces: list[tuple[int, int]] = []
        wanted, position = window, 0
        for start, end in spans:
            length = end - start
            if position + length <= offset:
                position += length
                continue
            skip = max(0, offset - position)
            take = min(length - skip, wanted)
            if take > 0:
                pieces.append((start + skip, start + skip + take))
                wanted -= take
            position += length
            if wanted <= 0:
                break
        if pieces:
            windows.append(pieces)
    return windows


def combine(
    answers: Sequence[tuple[float, float, dict[str, float], float]], *, model: str, seconds: float
) -> LanguageDetection:
    """One detection from each window's ``(start_s, end_s, probabilities, weight)``: probabilities
    averaged, weighted by the speech each window held."""
    total = sum(weight for *_, weight in answers) or 1.0
    averaged: dict[str, float] = {}
    for _, _, probabilities, weight in answers:
        for code, p in probabilities.items():
            averaged[code] = averaged.get(code, 0.0) + p * weight / total
    ranked = sorted(averaged.items(), key=lambda item: item[1], reverse=True)
    windows = [
        LanguageWindow(start=round(start, 2), end=round(end, 2), language=best, probability=round(p, 4))
        for start, end, probabilities, _ in answers
        for best, p in [max(probabilities.items(), key=lambda item: item[1])]
    ]
    sure = {w.language for w in windows if w.probability >= CONFIDENT_WINDOW}
    language, probability = ranked[0] if ranked else ("en", 0.0)
    return LanguageDetection(
        language=language,
        probability=round(probability, 4),
        candidates=[LanguageCandidate(language=c, probability=round(p, 4)) for c, p in ranked[:CANDIDATES]],
        windows=windows,
        model=model,
        seconds=round(seconds, 3),
        mixed=len(sure) > 1,
    )


def detect_blocking(model: Any, audio: np.ndarray, *, windows: int, name: str) -> LanguageDetection:
    """Language identification with a loaded multilingual faster-whisper model (blocking)."""
    started = time.perf_counter()
    chosen = pick_windows(speech_spans(audio), len(audio), windows, int(WINDOW_S * SAMPLE_RATE))
    answers: list[tuple[float, float, dict[str, float], float]] = []
    # The first and the last window first: when both are sure of the same language the ones between
    # are skipped (each window costs one encoder pass of the multilingual model).
    order = [0, *([len(chosen) - 1] if len(chosen) > 1 else []), *range(1, len(chosen) - 1)]
    for heard, index in enumerate(order):
        if heard == 2 and _agree(answers):
            break
        pieces = chosen[index]
        samples = np.concatenate([audio[start:end] for start, end in pieces])
        answers.append(
            (
                pieces[0][0] / SAMPLE_RATE,
                pieces[-1][1] / SAMPLE_RATE,
                window_probabilities(model, samples),
                float(len(samples)),
            )
        )
    answers.sort(key=lambda answer: answer[0])
    return combine(answers, model=name, seconds=time.perf_counter() - started)


def window_probabilities(model: Any, samples: np.ndarray) -> dict[str, float]:
    """Every language's probability for one window of at most 30 s.

    faster-whisper's own ``detect_language`` pads every window to 30 s; here the encoder hears the
    window plus ``ENCODER_PADDING_S`` of silence (as the corrector's second pass does), so a 5 s
    recording costs a third of an encoder pass. On the 11 clips of the fixtures (2 English, 9 in 7 other
    languages) the answers are the same language as padded, with probabilities within 0.02.
    """
    from faster_whisper.audio import pad_or_trim

    features = model.feature_extractor(samples)
    frames = min(WHISPER_FRAMES, features.shape[-1] + int(ENCODER_PADDING_S * 100))
    frames += frames % 2
    encoded = model.encode(pad_or_trim(features, frames))
    results = model.model.detect_language(encoded)[0]
    # tokens look like "<|en|>"
    return {token[2:-2]: float(p) for token, p in results}


def _agree(answers: Sequence[tuple[float, float, dict[str, float], float]]) -> bool:
    """Every window so far is sure (``AGREEING``) of one and the same language."""
    best = [max(probabilities.items(), key=lambda item: item[1]) for _, _, probabilities, _ in answers]
    return len({code for code, _ in best}) == 1 and all(p >= AGREEING for _, p in best)


# --- routing -------------------------------------------------------------------------------------


class UnsupportedLanguage(EngineError):
    """No configured model can do what the job asks; the job cannot succeed."""

    def __init__(self, message: str) -> None:
        super().__init__("unsupported_language", message, retryable=False)


@dataclass(frozen=True)
class Capabilities:
    """What each configured first pass can transcribe."""

    primary: str
    primary_languages: frozenset[str]
    multilingual: str | None
    multilingual_languages: frozenset[str]
    multilingual_second_pass: bool = False

    def languages(self) -> frozenset[str]:
        return self.primary_languages | self.multilingual_languages

    def can_translate(self) -> bool:
        return self.multilingual is not None and len(self.multilingual_languages) > 1


@dataclass(frozen=True)
class Route:
    multilingual: bool
    """The multilingual model does the first pass (else the configured first-pass engine)."""
    language: str | None
    second_pass: bool
    reason: str
    mixed: bool = False
    """Decode window by window, each in its own language (a mixed-language recording)."""


def route(options: JobOptions, language: str | None, how: str, caps: Capabilities) -> Route:
    """Where a job goes, given its language (None: unknown, the first pass decides) and ``how`` that
    language was found ("requested", "detected ...", ...). Raises :class:`UnsupportedLanguage`."""
    if options.task == "translate":
        if not caps.can_translate() or caps.multilingual is None:
            raise UnsupportedLanguage("translation needs a multilingual model and none is configured")
        if language is not None and language not in caps.multilingual_languages:
            raise UnsupportedLanguage(f"{caps.multilingual} cannot translate from {language!r}")
        return Route(
            multilingual=True,
            language=language,
            second_pass=False,
            reason=f"translation into English by {caps.multilingual} (language {language or 'unknown'}, "
            f"{how}); the second pass transcribes and is skipped",
        )
    if language is None or language in caps.primary_languages:
        english = language == "en" or caps.primary_languages == {"en"}
        second = english or caps.multilingual_second_pass
        spoken = language or "not identified"
        return Route(
            multilingual=False,
            language=language,
            second_pass=second,
            reason=f"language {spoken} ({how}): {caps.primary} knows it"
            + ("" if second else "; no second pass is set up for it, skipped"),
        )
    if language in caps.multilingual_languages and caps.multilingual is not None:
        second = caps.multilingual_second_pass
        return Route(
            multilingual=True,
            language=language,
            second_pass=second,
            reason=f"language {language} ({how}): {caps.primary} knows only "
            f"{', '.join(sorted(caps.primary_languages)) if len(caps.primary_languages) < 5 else 'others'}; "
            f"first pass by {caps.multilingual}"
            + ("" if second else "; no second pass is set up for it, skipped"),
        )
    raise UnsupportedLanguage(
        f"no configured model transcribes {language!r} ({how}); "
        f"{caps.primary}: {_list(caps.primary_languages)}"
        + (f", {caps.multilingual}: {_list(caps.multilingual_languages)}" if caps.multilingual else "")
    )


def _list(codes: frozenset[str]) -> str:
    return ", ".join(sorted(codes)) if len(codes) <= 5 else f"{len(codes)} Whisper languages"


LOOPING_COMPRESSION: Final = 2.4
"""Whisper's own limit: a segment whose text compresses better than this repeats itself."""


def looping_share(first: FirstPass) -> float:
    """Share of the words in segments that repeat themselves (an English-only model given another
    language often loops on a confident phrase: no word looks unsure)."""
    if len(first.words) < MIN_WORDS_FOR_UNSURE:
        return 0.0
    looping = sum(
        s.last_word - s.first_word for s in first.segments if s.compression_ratio > LOOPING_COMPRESSION
    )
    return looping / len(first.words)


def regional_unsure_share(first: FirstPass) -> float:
    """The largest share of unsure words in any ``REGION_S`` stretch (stepping by half of it)."""
    if not first.words:
        return 0.0
    worst, start, end = 0.0, 0.0, first.words[-1].end
    while start <= end:
        inside = [w for w in first.words if start <= w.start < start + REGION_S]
        if len(inside) >= MIN_WORDS_IN_REGION:
            worst = max(worst, sum(w.probability < UNSURE_WORD for w in inside) / len(inside))
        start += REGION_S / 2
    return worst


def doubt(first: FirstPass, speech_s: float) -> str | None:
    """Why a first pass by the model the job was routed to may be in the wrong language (None: it looks
    right). ``speech_s``: seconds of speech in the audio (VAD)."""
    words = len(first.words)
    if speech_s >= MIN_SPEECH_S and words < MIN_WORDS_TO_JUDGE:
        return f"{words} words for {speech_s:.0f} s of speech, too few to judge"
    if words == 0:
        return None
    unsure = unsure_share(first)
    if unsure >= SUSPICIOUS:
        return f"{unsure:.0%} of its words unsure"
    looping = looping_share(first)
    if looping >= SUSPICIOUS:
        return f"{looping:.0%} of its words in repeating segments"
    regional = regional_unsure_share(first)
    if regional >= REGIONAL_SUSPICIOUS:
        return f"{regional:.0%} of the words unsure in one part"
    if speech_s > 0 and words / speech_s < SLOWEST_SPEECH_WPS:
        return f"{words / speech_s:.1f} words per second of speech"
    if any(w.code == "possible_hallucination" for w in first.warnings):
        return "possibly invented text"
    return None


def unsure_share(first: FirstPass) -> float:
    if len(first.words) < MIN_WORDS_FOR_UNSURE:
        return 0.0
    return sum(w.probability < UNSURE_WORD for w in first.words) / len(first.words)


# --- the orchestration ---------------------------------------------------------------------------


class LanguageRouter:
    """The first pass of one job, in the right language, with the right model."""

    def __init__(self, settings: AsrSettings, primary: FirstPassEngine) -> None:
        self._settings = settings
        self.primary = primary
        self.multilingual: FasterWhisperEngine | None = None
        if settings.multilingual_model:
            if isinstance(primary, FasterWhisperEngine) and primary.model_spec == settings.multilingual_model:
                self.multilingual = primary
            else:
                self.multilingual = FasterWhisperEngine(settings, settings.multilingual_model)
        primary_model = settings.first_pass_model if settings.engine == "faster-whisper" else settings.model
        self._primary_languages = declared_languages(primary_model)

    def primary_loaded(self, model: Any) -> None:
        """Correct the first-pass model's languages by the loaded model's own flag."""
        self._primary_languages = loaded_languages(model)

    @property
    def caps(self) -> Capabilities:
        multilingual = self.multilingual
        return Capabilities(
            primary=self.primary.name,
            primary_languages=self._primary_languages,
            multilingual=multilingual.name if multilingual is not None else None,
            multilingual_languages=declared_languages(multilingual.model_spec)
            if multilingual is not None
            else frozenset(),
            multilingual_second_pass=self._settings.multilingual_second_pass,
        )

    def capabilities(self) -> AsrCapabilities:
        caps = self.caps
        return AsrCapabilities(
            languages=sorted(caps.languages()),
            translate=caps.can_translate(),
            engines=[caps.primary] + ([caps.multilingual] if caps.multilingual else []),
            updated_at=time.time(),
        )

    async def detect(self, audio: np.ndarray, *, doubtful: bool = False) -> LanguageDetection | None:
        """The spoken language, or None without a multilingual model (or, before the first pass, when
        :meth:`identify_up_front` says no; the guard passes ``doubtful`` and identifies whatever the
        setting)."""
        engine = self.multilingual
        if engine is None or not (doubtful or self.identify_up_front(audio)) or len(audio) == 0:
            return None
        windows = self._settings.language_windows
        detection = await engine.with_model(
            lambda model: detect_blocking(model, audio, windows=windows, name=engine.name)
        )
        log.info(
            "language: %s (p=%.2f) in %.1f s over %d windows%s",
            detection.language,
            detection.probability,
            detection.seconds,
            len(detection.windows),
            " (mixed)" if detection.mixed else "",
        )
        return detection

    def identify_up_front(self, audio: np.ndarray) -> bool:
        """Identify before the first pass? (Otherwise only when the first pass looks wrong.)"""
        mode = self._settings.detect_language
        if mode == "always":
            return True
        if mode == "auto":
            return len(audio) >= self._settings.identify_up_front_s * SAMPLE_RATE
        return False

    async def first_pass(
        self, audio: np.ndarray, options: JobOptions, on_progress: ProgressCallback | None = None
    ) -> FirstPass:
        caps = self.caps
        detection: LanguageDetection | None = None
        language = options.language
        how = "requested"
        if language is not None and options.task == "transcribe" and language not in caps.languages():
            raise UnsupportedLanguage(f"no configured model transcribes {language!r}")
        if language is None:
            detection = await self.detect(audio)
            if detection is not None:
                language = detection.language
                how = f"detected, p={detection.probability:.2f}"
            else:
                how = "not named, not identified before the first pass"
        chosen = route(options, language, how, caps)
        if detection is not None and detection.mixed and options.task == "transcribe":
            chosen = self._mixed_route(detection, caps) or chosen
        first = await self._run(chosen, audio, options, on_progress)
        if chosen.mixed and detection is not None:
            detection = await self._segment_languages(audio, first, detection)
        warnings: list[JobWarning] = []

        # The guard: a first pass that looks wrong may be in the wrong language.
        unsure = unsure_share(first)
        suspicion = self._suspicion(first, audio, options, chosen, identified=detection is not None)
        if suspicion is None and detection is None and options.language is None:
            chosen = dataclasses.replace(
                chosen,
                reason=f"{chosen.reason}; the first pass looked right (enough words, few unsure, none "
                "invented), so the language was not identified",
            )
        if suspicion is not None and options.task == "transcribe" and not chosen.mixed:
            log.info("first pass doubtful (%s): checking its language", suspicion)
            if detection is None:
                detection = await self.detect(audio, doubtful=True)
            if (
                detection is not None
                and detection.mixed
                and options.language is None
                and (mixed := self._mixed_route(detection, caps)) is not None
            ):
                chosen = dataclasses.replace(mixed, reason=f"{mixed.reason} (the first pass: {suspicion})")
                first = await self._run(chosen, audio, options, on_progress)
                detection = await self._segment_languages(audio, first, detection)
                unsure = unsure_share(first)
            elif detection is not None and detection.probability >= REROUTE_PROBABILITY:
                heard, p = detection.language, detection.probability
                # an English-only model reports "en" whatever it was told
                current = chosen.language or first.language
                if heard != current and options.language is None:
                    log.warning("first pass looked wrong (%s); re-routing to %s", suspicion, heard)
                    rerouted = route(options, heard, f"re-identified, p={p:.2f}", caps)
                    chosen = Route(
                        multilingual=rerouted.multilingual,
                        language=rerouted.language,
                        second_pass=rerouted.second_pass,
                        reason=f"{rerouted.reason} (re-routed: the first pass in "
                        f"{chosen.language or 'its own language'} looked wrong: {suspicion})",
                    )
                    first = await self._run(chosen, audio, options, on_progress)
                    unsure = unsure_share(first)
                elif heard != current:
                    warnings.append(
                        JobWarning(
                            code="language_mismatch",
                            message=f"the job asked for {options.language!r} but the speech sounds like "
                            f"{heard!r} (p={p:.2f}); transcribed as {options.language!r}",
                        )
                    )
        if unsure > MOSTLY_UNSURE:
            warnings.append(
                JobWarning(
                    code="mostly_unsure",
                    message=f"{unsure:.0%} of the first pass's words are unsure; the transcript may be "
                    "unreliable (wrong language, noise or music?)",
                )
            )
        if (
            options.task == "transcribe"
            and chosen.language is not None
            and first.language not in (chosen.language, "unknown")
        ):
            warnings.append(
                JobWarning(
                    code="language_mismatch",
                    message=f"the first pass ({first.engine}) reported {first.language!r}, "
                    f"the job was routed as {chosen.language!r}",
                )
            )
        if detection is not None and detection.mixed:
            heard_in = sorted({w.language for w in detection.windows if w.probability >= CONFIDENT_WINDOW})
            warnings.append(
                JobWarning(
                    code="mixed_language",
                    message=f"parts of the recording sound like different languages ({', '.join(heard_in)}); "
                    + (
                        "each part was transcribed in its own language"
                        if chosen.mixed
                        else f"transcribed as {chosen.language or first.language!r}"
                    ),
                )
            )
        engine = self.multilingual if chosen.multilingual and self.multilingual is not None else self.primary
        spoken = chosen.language or (detection.language if chosen.mixed and detection else first.language)
        return msgspec.structs.replace(
            first,
            language="en" if options.task == "translate" else spoken,
            seconds=first.seconds + (detection.seconds if detection is not None else 0.0),
            warnings=[*first.warnings, *warnings],
            language_detection=detection,
            routing=Routing(
                task=options.task,
                language=spoken,
                first_pass=engine.name,
                second_pass=chosen.second_pass,
                reason=chosen.reason,
            ),
        )

    @staticmethod
    def _suspicion(
        first: FirstPass, audio: np.ndarray, options: JobOptions, chosen: Route, *, identified: bool
    ) -> str | None:
        """Why the first pass may be in the wrong language (None: no reason to check). A job whose
        language was not identified before its first pass is judged on every sign (:func:`doubt`); one
        whose language was named or identified only when most of its words are unsure or loop."""
        if options.task != "transcribe" or chosen.mixed:
            return None
        if not identified and options.language is None:
            return doubt(first, speech_seconds(audio))
        unsure, looping = unsure_share(first), looping_share(first)
        if max(unsure, looping) < SUSPICIOUS:
            return None
        return f"{unsure:.0%} of its words unsure" if unsure >= looping else f"{looping:.0%} looping"

    def _mixed_route(self, detection: LanguageDetection, caps: Capabilities) -> Route | None:
        """A recording heard in several languages goes to the multilingual model, decoded window by
        window in each one's language (None: no multilingual model knows them all)."""
        heard = sorted({w.language for w in detection.windows if w.probability >= CONFIDENT_WINDOW})
        if caps.multilingual is None or not set(heard) <= caps.multilingual_languages:
            return None
        second = caps.multilingual_second_pass
        return Route(
            multilingual=True,
            language=None,
            second_pass=second,
            reason=f"mixed recording ({', '.join(heard)}, mostly {detection.language}): first pass by "
            f"{caps.multilingual}, each window in the language it is heard in"
            + ("" if second else "; no second pass is set up for it, skipped"),
            mixed=True,
        )

    async def _segment_languages(
        self, audio: np.ndarray, first: FirstPass, detection: LanguageDetection
    ) -> LanguageDetection:
        """The language of each first-pass segment of a mixed recording (one short encoder pass each),
        among the languages the windows were sure of: a second of speech alone is easily mistaken
        (a Spanish "Mi muy querido Manuel." sounded Japanese on its own)."""
        engine = self.multilingual
        if engine is None or not first.segments:
            return detection
        spans = [(s.start, s.end) for s in first.segments if s.end > s.start]
        heard = {w.language for w in detection.windows if w.probability >= CONFIDENT_WINDOW}

        def identify(model: Any) -> list[LanguageWindow]:
            found: list[LanguageWindow] = []
            for start, end in spans:
                samples = audio[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)]
                if len(samples) == 0:
                    continue
                probabilities = window_probabilities(model, samples[: int(30 * SAMPLE_RATE)])
                among = {code: p for code, p in probabilities.items() if code in heard} or probabilities
                best, p = max(among.items(), key=lambda item: item[1])
                found.append(
                    LanguageWindow(
                        start=round(start, 2), end=round(end, 2), language=best, probability=round(p, 4)
                    )
                )
            return found

        started = time.perf_counter()
        segments = await engine.with_model(identify)
        return msgspec.structs.replace(
            detection, segments=segments, seconds=round(detection.seconds + time.perf_counter() - started, 3)
        )

    async def _run(
        self, chosen: Route, audio: np.ndarray, options: JobOptions, on_progress: ProgressCallback | None
    ) -> FirstPass:
        if chosen.multilingual:
            engine = self.multilingual
            assert engine is not None  # route() only picks it when it exists
            return await engine.transcribe(
                audio,
                language=chosen.language,
                prompt=options.prompt,
                on_progress=on_progress,
                task=options.task,
                mixed=chosen.mixed,
            )
        return await self.primary.transcribe(
            audio, language=chosen.language, prompt=options.prompt, on_progress=on_progress
        )
