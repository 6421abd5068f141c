"""Language identification and routing: the pure rules, then the real models on real speech in Spanish,
German and English (fixtures in tests/fixtures/multilingual, see its ATTRIBUTION.md)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from faster_whisper import decode_audio
from relisten_asr.engines import FasterWhisperEngine
from relisten_asr.language import (
    Capabilities,
    LanguageRouter,
    UnsupportedLanguage,
    combine,
    declared_languages,
    doubt,
    pick_windows,
    route,
    whisper_languages,
)
from relisten_asr.settings import AsrSettings
from relisten_contracts import FirstPass, JobOptions, JobWarning, Routing, Word, routed_options

FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "multilingual"
RATE = 16000
ALL = whisper_languages()


def reference(name: str) -> str:
    for line in (FIXTURES / "manifest.jsonl").read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        if item["file"] == name:
            return str(item["reference"])
    raise KeyError(name)


def wer(ref: str, hyp: str) -> float:
    from relisten.multilingual import error_rate

    return error_rate(ref, hyp, "xx")


# --- pure rules ----------------------------------------------------------------------------------


def test_english_only_models_are_known_by_name() -> None:
    assert declared_languages("bundled:tiny.en") == {"en"}
    assert declared_languages("Systran/faster-whisper-small.en") == {"en"}
    assert declared_languages("/models/medium.en/") == {"en"}
    assert declared_languages("bundled:base") == ALL
    assert {"es", "de", "ja", "yue"} <= ALL and "tlh" not in ALL


def test_windows_are_spread_over_the_speech_not_the_first_30_s() -> None:
    window = 30 * RATE
    # 100 s of audio, speech from 10-40 s and 60-100 s (70 s of speech): three windows, the last ending
    # at the end of the speech
    spans = [(10 * RATE, 40 * RATE), (60 * RATE, 100 * RATE)]
    windows = pick_windows(spans, 100 * RATE, 3, window)
    assert len(windows) == 3
    assert windows[0][0][0] == 10 * RATE
    assert windows[-1][-1][1] == 100 * RATE
    for pieces in windows:
        assert sum(end - start for start, end in pieces) == window
        assert all(any(s <= a and b <= e for s, e in spans) for a, b in pieces)
    # the middle window straddles the pause: part of both stretches of speech
    assert len(windows[1]) == 2


def test_short_speech_gets_one_window_and_no_speech_the_audio_itself() -> None:
    assert pick_windows([(RATE, 9 * RATE)], 10 * RATE, 3, 30 * RATE) == [[(RATE, 9 * RATE)]]
    assert pick_windows([], 10 * RATE, 3, 30 * RATE) == [[(0, 10 * RATE)]]
    assert pick_windows([], 0, 3, 30 * RATE) == []


def test_combined_detection_averages_by_speech_and_marks_mixed_recordings() -> None:
    one = combine(
        [(0.0, 30.0, {"es": 0.9, "gl": 0.1}, 3.0), (40.0, 50.0, {"de": 0.8, "en": 0.2}, 1.0)],
        model="m",
        seconds=0.5,
    )
    assert one.language == "es"
    assert one.probability == pytest.approx(0.675)
    assert [c.language for c in one.candidates] == ["es", "de", "gl", "en"]
    assert [(w.language, w.probability) for w in one.windows] == [("es", 0.9), ("de", 0.8)]
    assert one.mixed
    unsure = combine(
        [(0.0, 30.0, {"es": 0.9, "gl": 0.1}, 1.0), (40.0, 50.0, {"de": 0.4, "en": 0.3}, 1.0)],
        model="m",
        seconds=0.5,
    )
    assert not unsure.mixed


CAPS = Capabilities(
    primary="faster-whisper:tiny.en",
    primary_languages=frozenset({"en"}),
    multilingual="faster-whisper:base",
    multilingual_languages=ALL,
)


def test_english_keeps_the_tiny_en_then_base_hierarchy() -> None:
    chosen = route(JobOptions(), "en", "detected", CAPS)
    assert (chosen.multilingual, chosen.language, chosen.second_pass) == (False, "en", True)
    assert route(JobOptions(), None, "not identified", CAPS).second_pass


def test_other_languages_go_to_the_multilingual_model_without_a_second_pass() -> None:
    chosen = route(JobOptions(language="es"), "es", "requested", CAPS)
    assert (chosen.multilingual, chosen.language, chosen.second_pass) == (True, "es", False)
    assert "skipped" in chosen.reason and "tiny.en" in chosen.reason
    configured = Capabilities(**{**CAPS.__dict__, "multilingual_second_pass": True})
    assert route(JobOptions(), "es", "detected", configured).second_pass


def test_translation_goes_to_the_multilingual_model() -> None:
    chosen = route(JobOptions(task="translate"), "de", "detected", CAPS)
    assert (chosen.multilingual, chosen.second_pass) == (True, False)
    assert "translation" in chosen.reason


def test_what_nothing_can_do_is_refused() -> None:
    with pytest.raises(UnsupportedLanguage) as caught:
        route(JobOptions(language="tlh"), "tlh", "requested", CAPS)
    assert caught.value.code == "unsupported_language" and not caught.value.retryable
    english_only = Capabilities(
        primary="faster-whisper:tiny.en",
        primary_languages=frozenset({"en"}),
        multilingual=None,
        multilingual_languages=frozenset(),
    )
    with pytest.raises(UnsupportedLanguage):
        route(JobOptions(language="es"), "es", "requested", english_only)
    with pytest.raises(UnsupportedLanguage):
        route(JobOptions(task="translate"), None, "not identified", english_only)
    assert not english_only.can_translate() and english_only.languages() == {"en"}


def test_a_skipped_second_pass_turns_correction_off_for_the_next_stages() -> None:
    def first(second_pass: bool) -> FirstPass:
        routing = Routing(
            task="transcribe", language="es", first_pass="b", second_pass=second_pass, reason=""
        )
        return FirstPass(
            language="es", duration_s=1, words=[], segments=[], engine="b", seconds=0, routing=routing
        )

    assert routed_options(JobOptions(), first(False)).correction == "off"
    assert routed_options(JobOptions(), first(True)).correction == "auto"


def spoken(*probabilities: float, seconds_each: float = 0.4, warnings: tuple[str, ...] = ()) -> FirstPass:
    words = [
        Word(word=f"w{i}", start=i * seconds_each, end=(i + 1) * seconds_each, probability=p)
        for i, p in enumerate(probabilities)
    ]
    return FirstPass(
        language="en",
        duration_s=len(words) * seconds_each,
        words=words,
        segments=[],
        engine="tiny.en",
        seconds=0,
        warnings=[JobWarning(code=code, message="") for code in warnings],
    )


def test_a_first_pass_that_looks_right_is_not_doubted() -> None:
    assert doubt(spoken(*[0.9] * 40), speech_s=16) is None
    assert doubt(spoken(*[0.9] * 36, *[0.2] * 4), speech_s=16) is None  # 10 % unsure: degraded English
    assert doubt(spoken(), speech_s=0.3) is None  # no speech, no words: nothing to identify


def test_each_sign_of_a_wrong_language_is_a_reason_to_identify_it() -> None:
    assert "too few" in str(doubt(spoken(0.99, 0.99, 0.99, 0.99), speech_s=6))  # "Thank you very much."
    assert "too few" in str(doubt(spoken(), speech_s=6))  # speech, and no word at all
    assert "unsure" in str(doubt(spoken(*[0.9] * 20, *[0.2] * 10), speech_s=12))
    assert "per second" in str(doubt(spoken(*[0.9] * 20), speech_s=30))  # 20 words for 30 s of speech
    assert "invented" in str(doubt(spoken(*[0.9] * 20, warnings=("possible_hallucination",)), speech_s=8))
    # a recording in English but for one part: the whole is mostly sure, the part is not
    part = spoken(*[0.95] * 150, *[0.2] * 100, *[0.95] * 150, seconds_each=0.3)
    assert "one part" in str(doubt(part, speech_s=120))


def test_the_old_true_false_values_still_work() -> None:
    assert AsrSettings(detect_language=True).detect_language == "always"
    assert AsrSettings(detect_language="false").detect_language == "when_doubtful"
    assert AsrSettings().detect_language == "auto"


# --- the real models on real speech --------------------------------------------------------------


@pytest.fixture(scope="module")
def router() -> Iterator[LanguageRouter]:
    settings = AsrSettings(beam_size=1)
    primary = FasterWhisperEngine(settings)
    made = LanguageRouter(settings, primary)
    made.primary_loaded(primary.load())
    yield made


def audio(name: str) -> np.ndarray:
    return np.asarray(decode_audio(str(FIXTURES / name), sampling_rate=RATE), dtype=np.float32)


async def test_spanish_is_identified_and_transcribed_in_spanish(router: LanguageRouter) -> None:
    name = "librivox-es-alarcon-capitan-veneno-dedicatoria.flac"
    first = await router.first_pass(audio(name), JobOptions())
    assert first.language == "es"
    assert first.language_detection is not None
    assert first.language_detection.language == "es" and first.language_detection.probability > 0.8
    assert first.language_detection.candidates[0].language == "es"
    assert first.routing is not None
    assert first.routing.first_pass == "faster-whisper:base" and not first.routing.second_pass
    assert first.engine == "faster-whisper:base"
    assert wer(reference(name), " ".join(w.word for w in first.words)) < 0.3
    assert not first.warnings


async def test_a_named_language_is_honoured_without_identification(router: LanguageRouter) -> None:
    name = "leopard-test_de.wav"
    first = await router.first_pass(audio(name), JobOptions(language="de"))
    assert first.language == "de" and first.language_detection is None
    assert first.routing is not None and "requested" in first.routing.reason
    assert wer(reference(name), " ".join(w.word for w in first.words)) < 0.5


async def test_english_still_goes_through_tiny_en(router: LanguageRouter) -> None:
    clip = FIXTURES.parent / "audio" / "ls-dev-clean-1272-128104-0000.wav"
    speech = np.asarray(decode_audio(str(clip), sampling_rate=RATE), dtype=np.float32)
    first = await router.first_pass(speech, JobOptions())
    assert first.language == "en" and first.engine == "faster-whisper:tiny.en"
    assert first.routing is not None and first.routing.second_pass


async def test_spanish_forced_to_english_is_flagged_not_trusted(router: LanguageRouter) -> None:
    first = await router.first_pass(
        audio("librivox-es-alarcon-capitan-veneno-dedicatoria.flac"), JobOptions(language="en")
    )
    assert first.engine == "faster-whisper:tiny.en"  # the user's choice is honoured ...
    codes = {w.code for w in first.warnings}
    assert "language_mismatch" in codes  # ... and told
    assert first.language_detection is not None and first.language_detection.language == "es"


async def test_mixed_recording_is_heard_beyond_its_first_30_s(router: LanguageRouter) -> None:
    spanish = audio("librivox-es-alarcon-capitan-veneno-dedicatoria.flac")
    german = audio("librivox-de-grimmelshausen-simplicissimus-titel.flac")
    detection = await router.detect(np.concatenate([spanish, german]), doubtful=True)
    assert detection is not None
    languages = [w.language for w in detection.windows]
    assert len(languages) == 3 and languages[0] == "es" and languages[-1] == "de"  # all three heard
    assert detection.mixed
    assert detection.windows[-1].end == pytest.approx((len(spanish) + len(german)) / RATE, abs=1.0)


async def test_translation_gives_english_words_timed_against_the_audio(router: LanguageRouter) -> None:
    speech = audio("leopard-test_es.wav")
    first = await router.first_pass(speech, JobOptions(task="translate"))
    assert first.language == "en"
    assert first.routing is not None and first.routing.task == "translate" and first.routing.language == "es"
    text = " ".join(w.word for w in first.words).lower()
    assert "the" in text.split() and "arenas" not in text  # English out, not the Spanish heard
    assert first.words and all(0 <= w.start <= w.end <= len(speech) / RATE for w in first.words)


async def test_a_doubtful_first_pass_is_re_routed_when_identification_was_off() -> None:
    settings = AsrSettings(beam_size=1, detect_language=False)
    primary = FasterWhisperEngine(settings)
    made = LanguageRouter(settings, primary)
    made.primary_loaded(primary.load())
    name = "librivox-es-alarcon-capitan-veneno-dedicatoria.flac"
    # with identification off, a job without a language goes to tiny.en first; its answer looks
    # wrong, so the language is identified after all and the job is decoded again, in Spanish
    first = await made.first_pass(audio(name), JobOptions())
    assert first.language == "es" and first.engine == "faster-whisper:base"
    assert first.routing is not None and "re-routed" in first.routing.reason
    assert wer(reference(name), " ".join(w.word for w in first.words)) < 0.3


async def test_windows_between_two_agreeing_ones_are_not_heard(router: LanguageRouter) -> None:
    sonnets = FIXTURES.parent / "librispeech-dev" / "audio"
    speech = np.concatenate(
        [
            np.asarray(
                decode_audio(str(sonnets / f"long-librivox-shakespeare-sonnet-00{n}.mp3")), dtype=np.float32
            )
            for n in (1, 2)
        ]
    )
    detection = await router.detect(speech, doubtful=True)  # 106 s: three windows planned
    assert detection is not None and detection.language == "en" and not detection.mixed
    # the first and the last agreed, so the middle one was skipped
    assert len(detection.windows) == 2
    assert detection.windows[0].start < 5 and detection.windows[1].end > len(speech) / RATE - 5


async def test_a_mixed_recording_is_transcribed_part_by_part_in_its_languages(router: LanguageRouter) -> None:
    spanish = audio("librivox-es-alarcon-capitan-veneno-dedicatoria.flac")
    german = audio("librivox-de-grimmelshausen-simplicissimus-titel.flac")
    first = await router.first_pass(np.concatenate([spanish, german]), JobOptions())
    assert first.routing is not None and "mixed recording" in first.routing.reason
    assert first.engine == "faster-whisper:base"
    detection = first.language_detection
    assert detection is not None and detection.mixed and detection.segments
    border = len(spanish) / RATE
    before = {s.language for s in detection.segments if s.end <= border}
    after = {s.language for s in detection.segments if s.start >= border}
    assert before == {"es"} and after == {"de"}
    text = " ".join(w.word for w in first.words)
    assert "Manuel" in text and "Grimmelshausen" in text  # each part in its own language
    assert "mixed_language" in {w.code for w in first.warnings}


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("leopard-test_*.wav")))
async def test_short_clips_in_other_languages_are_caught_after_an_english_first_pass(
    router: LanguageRouter, name: str
) -> None:
    # short recordings are not identified before the first pass (detect_language=auto): tiny.en hears
    # them first, and its answer must give the language away, even the French clip it turns into a
    # confident "Thank you very much."
    language = name.removeprefix("leopard-test_").removesuffix(".wav")
    first = await router.first_pass(audio(name), JobOptions())
    assert first.language == language and first.engine == "faster-whisper:base"
    assert first.routing is not None and "re-routed" in first.routing.reason


async def test_english_that_looks_right_pays_no_identification(router: LanguageRouter) -> None:
    clip = FIXTURES.parent / "audio" / "ls-test-other-1688-142285-0000.flac"
    speech = np.asarray(decode_audio(str(clip), sampling_rate=RATE), dtype=np.float32)
    first = await router.first_pass(speech, JobOptions())
    assert first.language == "en" and first.engine == "faster-whisper:tiny.en"
    assert first.language_detection is None  # no encoder pass of the multilingual model was paid for
    assert first.routing is not None and "not identified" in first.routing.reason


async def test_long_recordings_are_identified_before_the_first_pass() -> None:
    settings = AsrSettings(beam_size=1, identify_up_front_s=20)
    primary = FasterWhisperEngine(settings)
    made = LanguageRouter(settings, primary)
    made.primary_loaded(primary.load())
    first = await made.first_pass(audio("librivox-es-alarcon-capitan-veneno-dedicatoria.flac"), JobOptions())
    assert first.language == "es" and first.engine == "faster-whisper:base"
    assert first.routing is not None and "re-routed" not in first.routing.reason
    assert first.language_detection is not None
