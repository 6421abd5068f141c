"""The in-process second pass on real speech: the bundled Whisper base, joined from its two packages."""

from __future__ import annotations

import asyncio
import os
import time
from itertools import pairwise
from pathlib import Path

import jiwer
import numpy as np
import pytest
from faster_whisper import decode_audio
from relisten_corrector.backends import (
    BackendError,
    FasterWhisperBackend,
    SecondPassAnswer,
    build_backend,
)
from relisten_corrector.settings import CorrectorSettings

from relisten.testing import IRON, normalise
from relisten.testing import IRON_REFERENCE as REFERENCE


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return np.asarray(decode_audio(str(IRON), sampling_rate=16000), dtype=np.float32)


async def test_an_unknown_bundled_model_is_a_clear_error(model_cache: Path) -> None:
    backend = build_backend(CorrectorSettings(second_pass_model="bundled:huge", model_cache_dir=model_cache))
    with pytest.raises(BackendError) as failure:
        await backend.transcribe(np.zeros(16000, dtype=np.float32), prompt=None, language=None)
    assert failure.value.code == "model_unavailable"


async def test_base_transcribes_real_speech(model_cache: Path, speech: np.ndarray) -> None:
    settings = CorrectorSettings(model_cache_dir=model_cache, cpu_threads=min(os.cpu_count() or 2, 4))
    backend = build_backend(settings)
    assert isinstance(backend, FasterWhisperBackend)
    assert backend.name == "faster-whisper:base"
    await asyncio.to_thread(backend.load)
    started = time.perf_counter()
    try:
        answer = await backend.transcribe(speech, prompt="Margaret, Thornton.", language="en")
    finally:
        await backend.aclose()
    decoded_in = time.perf_counter() - started

    error_rate = jiwer.wer(REFERENCE, normalise(answer.text))
    print(
        f"base: load {backend.load_seconds:.2f} s, decode {decoded_in:.2f} s, WER {error_rate:.3f}: {answer.text}"
    )
    assert error_rate < 0.3
    assert answer.words is not None and len(answer.words) >= 25
    assert normalise(" ".join(w.word for w in answer.words)) == normalise(answer.text)
    duration = len(speech) / 16000
    for before, after in pairwise(answer.words):
        assert before.start <= after.start
    for word in answer.words:
        assert 0.0 <= word.start <= word.end <= duration + 0.01
        assert 0.0 <= word.probability <= 1.0
        assert word.word == word.word.strip()


async def test_decodes_queue_one_at_a_time(model_cache: Path, speech: np.ndarray) -> None:
    backend = FasterWhisperBackend(CorrectorSettings(model_cache_dir=model_cache, beam_size=1))
    # "there's iron, they say, in all our blood, and a grain or two perhaps is good"
    clip = speech[: 16000 * 6]
    try:
        first, second = await asyncio.gather(
            backend.transcribe(clip, prompt=None, language="en"),
            backend.transcribe(clip, prompt=None, language="xx-not-a-language"),
        )
        empty = await backend.transcribe(clip[:0], prompt=None, language=None)
    finally:
        await backend.aclose()
    assert empty == SecondPassAnswer(text="", words=[])
    # Same clip, same greedy decoder: same words, whether or not the language was usable.
    assert first.text and first.text == second.text
    assert jiwer.wer(REFERENCE[:73], normalise(first.text)) < 0.3


async def test_packed_clips_decode_alike_with_a_trimmed_encoder_input(
    model_cache: Path, speech: np.ndarray
) -> None:
    # Three pieces of the chapter's first sentence: ~12 s of audio, under half a chunk.
    pieces = [speech[: 16000 * 4], speech[16000 * 4 : 16000 * 8], speech[16000 * 8 : 16000 * 12]]
    answers = {}
    heard_frames = {}
    for padding_s in (8.0, 30.0):
        backend = FasterWhisperBackend(
            CorrectorSettings(model_cache_dir=model_cache, encoder_padding_s=padding_s)
        )
        model = await asyncio.to_thread(backend.load)
        frames: list[int] = []
        encode = model.encode

        def spy(features: np.ndarray, frames: list[int] = frames, encode: object = encode) -> object:
            frames.append(int(features.shape[-1]))
            return encode(features)  # type: ignore[operator]

        model.encode = spy
        try:
            answers[padding_s] = await backend.transcribe_many(pieces, prompt=None, language="en")
        finally:
            await backend.aclose()
        heard_frames[padding_s] = frames
    assert heard_frames[30.0] == [3000]
    assert heard_frames[8.0] == [2200]  # 12 s of clips, 2 s of gaps between them, 8 s of padding
    trimmed = normalise(" ".join(answer.text for answer in answers[8.0]))
    full = normalise(" ".join(answer.text for answer in answers[30.0]))
    assert jiwer.wer(REFERENCE, trimmed) < 0.3
    assert jiwer.wer(full, trimmed) < 0.15
    for answer in answers[8.0]:
        assert answer.words
        assert all(0.0 <= w.start <= w.end <= 4.0 for w in answer.words)
