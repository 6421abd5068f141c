"""Speech the first pass skipped is found in the gaps between words and decoded again."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Any

import jiwer
import numpy as np
import pytest
from faster_whisper import decode_audio
from hypothesis import given, settings
from hypothesis import strategies as st
from relisten_asr.engines import FasterWhisperEngine, Task
from relisten_asr.recovery import RecoveryPolicy, unheard_speech
from relisten_asr.settings import AsrSettings
from relisten_contracts import Word
from relisten_runtime.audio import frame_levels

RATE = 16000
FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures"
CLIP = FIXTURES / "audio" / "ls-test-other-1688-142285-0000.flac"
REFERENCE = (
    "there's iron they say in all our blood and a grain or two perhaps is good but his he makes me "
    "harshly feel has got a little too much of steel anon"
)


def tone(seconds: float, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (level * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def quiet(seconds: float, level: float = 0.001) -> np.ndarray:
    return (level * np.random.default_rng(0).standard_normal(int(seconds * RATE))).astype(np.float32)


def word(text: str, start: float, end: float) -> Word:
    return Word(word=text, start=start, end=end, probability=0.9)


def test_frame_levels_in_db() -> None:
    levels = frame_levels(np.concatenate([np.zeros(RATE, np.float32), tone(1.0)]), RATE, 0.03)
    assert levels.size == int(2.0 / 0.03)
    assert levels[:30].max() == pytest.approx(-120.0)
    assert levels[-30:].min() == pytest.approx(20 * np.log10(0.3 / np.sqrt(2)), abs=0.5)


def test_a_loud_gap_between_words_is_unheard_speech() -> None:
    # words 0-2 s, a 5 s gap holding 3 s of speech-loud audio, words 7-9 s
    audio = np.concatenate([tone(2.0), quiet(1.0), tone(3.0), quiet(1.0), tone(2.0)])
    words = [word("a", 0.0, 1.0), word("b", 1.0, 2.0), word("c", 7.0, 8.0), word("d", 8.0, 9.0)]
    [(start, end)] = unheard_speech(words, audio, RATE)
    assert start == pytest.approx(3.0 - 0.2, abs=0.05)
    assert end == pytest.approx(6.0 + 0.2, abs=0.05)


def test_quiet_gaps_short_gaps_and_short_noises_are_not() -> None:
    audio = np.concatenate([tone(2.0), quiet(5.0), tone(0.5), tone(0.5, 0.3), quiet(2.0), tone(2.0)])
    words = [word("a", 0.0, 2.0), word("b", 7.0, 8.0), word("c", 10.0, 12.0)]
    # 2-7 s: quiet; 7-8 s: a word; 8-10 s: loud for 0.5 s only (< min_speech_s)
    assert unheard_speech(words, audio, RATE) == []
    loud_but_short_gap = [word("a", 0.0, 2.0), word("b", 2.5, 7.0), word("c", 8.9, 12.0)]
    assert unheard_speech(loud_but_short_gap, audio, RATE, RecoveryPolicy(min_gap_s=2.0)) == []


def test_leading_and_trailing_speech_count_and_no_words_means_no_reference() -> None:
    audio = np.concatenate([tone(3.0), quiet(0.5), tone(2.0), quiet(0.5), tone(3.0)])
    spans = unheard_speech([word("mid", 3.5, 5.5)], audio, RATE)
    assert [(round(a, 1), round(b, 1)) for a, b in spans] == [(0.0, 3.2), (5.8, 9.0)]
    assert unheard_speech([], audio, RATE) == []


class SkippingEngine(FasterWhisperEngine):
    """The real engine, except that the main decode loses the words it heard between 4 s and 12 s, as
    Whisper does when it ends a window early."""

    def _start_decode(
        self,
        model: Any,
        audio: np.ndarray,
        language: str | None,
        prompt: str | None,
        task: Task = "transcribe",
    ) -> Any:
        segments, info = super()._start_decode(model, audio, language, prompt, task)
        kept = [
            dataclasses.replace(s, words=[w for w in s.words or () if not 4.0 < w.start < 12.0])
            for s in segments
        ]
        return iter(kept), info


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return np.asarray(decode_audio(str(CLIP), sampling_rate=RATE), dtype=np.float32)


@pytest.mark.parametrize("batch_size", [0, 4])
async def test_skipped_speech_is_decoded_again(speech: np.ndarray, batch_size: int) -> None:
    settings = AsrSettings(batch_size=batch_size, beam_size=1)
    without = await SkippingEngine(settings.model_copy(update={"recover_unheard_speech": False})).transcribe(
        speech, language="en", prompt=None
    )
    result = await SkippingEngine(settings).transcribe(speech, language="en", prompt=None)

    def wer(words: list[Word]) -> float:
        text = " ".join(w.word for w in words).lower()
        return float(
            jiwer.wer(REFERENCE, " ".join("".join(c for c in text if c.isalnum() or c in " '").split()))
        )

    assert not any(4.0 < w.start < 12.0 for w in without.words), "the simulated skip did not skip"
    assert wer(without.words) > 0.3
    print(
        batch_size, wer(without.words), wer(result.words), [(w.word, round(w.start, 2)) for w in result.words]
    )
    assert wer(result.words) < 0.3, [(w.word, w.start) for w in result.words]
    assert any(4.0 < w.start < 12.0 for w in result.words)
    starts = [w.start for w in result.words]
    assert starts == sorted(starts)
    assert result.segments[0].first_word == 0 and result.segments[-1].last_word == len(result.words)
    for before, after in zip(result.segments, result.segments[1:], strict=False):
        assert before.last_word == after.first_word


@st.composite
def words_and_audio(draw: st.DrawFn) -> tuple[list[Word], np.ndarray]:
    seconds = draw(st.integers(1, 30))
    levels = draw(st.lists(st.sampled_from([0.0, 0.001, 0.05, 0.3]), min_size=seconds, max_size=seconds))
    audio = np.concatenate([tone(1.0, level) for level in levels])
    times = sorted(draw(st.lists(st.floats(0.0, float(seconds)), max_size=40)))
    words = [word(f"w{i}", a, b) for i, (a, b) in enumerate(zip(times[::2], times[1::2], strict=False))]
    return words, audio


@settings(max_examples=200, deadline=None)
@given(words_and_audio())
def test_spans_lie_in_long_gaps_in_order(case: tuple[list[Word], np.ndarray]) -> None:
    words, audio = case
    policy = RecoveryPolicy()
    spans = unheard_speech(words, audio, RATE, policy)
    duration = len(audio) / RATE
    edges = [0.0, *(t for w in words for t in (w.start, w.end)), duration]
    gaps = [(a, b) for a, b in zip(edges[::2], edges[1::2], strict=True) if b - a >= policy.min_gap_s]
    for start, end in spans:
        assert 0.0 <= start < end <= duration
        assert any(a <= start and end <= b for a, b in gaps)
        assert end - start >= policy.min_speech_s
    assert spans == sorted(spans)
    assert all(before[1] <= after[0] for before, after in itertools.pairwise(spans))


def test_segments_without_words_keep_their_place() -> None:
    from types import SimpleNamespace

    from relisten_asr.engines import _assemble

    def heard(text: str, start: float, end: float) -> SimpleNamespace:
        return SimpleNamespace(word=text, start=start, end=end, probability=0.9)

    def segment(start: float, end: float, words: list[SimpleNamespace]) -> SimpleNamespace:
        return SimpleNamespace(
            start=start,
            end=end,
            text=" ".join(w.word for w in words) or "...",
            avg_logprob=-0.2,
            compression_ratio=1.2,
            no_speech_prob=0.1,
            words=words,
        )

    pieces = [
        (0.0, 0.0, 10.0, segment(1.0, 3.0, [heard("a", 1.0, 1.5), heard("b", 1.5, 2.0)])),
        (0.0, 0.0, 10.0, segment(0.2, 0.4, [])),
        (0.0, 0.0, 10.0, segment(4.0, 5.0, [])),
        (0.0, 0.0, 10.0, segment(6.0, 7.0, [])),
    ]
    words, segments = _assemble(pieces, 10.0)
    assert [w.word for w in words] == ["a", "b"]
    assert [(s.start, s.first_word, s.last_word) for s in segments] == [
        (0.2, 0, 0),
        (1.0, 0, 2),
        (4.0, 2, 2),
        (6.0, 2, 2),
    ]
