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

from relisten.testing import AUDIO_FIXTURES, IRON, normalise
from relisten.testing import IRON_REFERENCE as REFERENCE

DEV_CLEAN = AUDIO_FIXTURES / "ls-dev-clean-1272-128104-0000.wav"
"""Another speaker's sentence (LibriSpeech dev-clean), for a second job."""


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


@pytest.mark.parametrize("padding_s", [30.0, 8.0])
async def test_two_jobs_decoded_together_hear_what_each_hears_alone(
    model_cache: Path, speech: np.ndarray, padding_s: float
) -> None:
    other = np.asarray(decode_audio(str(DEV_CLEAN), sampling_rate=16000), dtype=np.float32)
    # Two jobs' clips: pieces of two speakers' sentences, each job's packed into one chunk (16 s and
    # 7 s): together, the second job's chunk is encoded with the first one's longer input.
    first = [speech[: 16000 * 4], speech[16000 * 5 : 16000 * 9], speech[16000 * 9 :]]
    second = [other[: 16000 * 3], other[16000 * 3 :]]
    backend = FasterWhisperBackend(
        CorrectorSettings(model_cache_dir=model_cache, encoder_padding_s=padding_s)
    )
    try:
        alone = [
            await backend.transcribe_many(clips, prompt=None, language="en") for clips in (first, second)
        ]
        together = await backend.transcribe_together([first, second], prompt=None, language="en")
        timed, model_seconds = await backend.transcribe_many_timed(first, prompt=None, language="en")
    finally:
        await backend.aclose()
    assert [len(answers) for answers in together] == [3, 2]
    assert timed == alone[0] and model_seconds > 0
    heard = [[a.text for a in answers] for answers in together]
    assert heard == [[a.text for a in answers] for answers in alone]
    assert all(heard[0]) and all(heard[1])
    assert jiwer.wer(REFERENCE, normalise(" ".join(heard[0]))) < 0.3
    for own, shared in zip(alone, together, strict=True):
        for by_itself, with_others in zip(own, shared, strict=True):
            assert by_itself.words is not None and with_others.words is not None
            assert [w.word for w in with_others.words] == [w.word for w in by_itself.words]
            for position, (w, v) in enumerate(zip(with_others.words, by_itself.words, strict=True)):
                # Times relative to the clip, as alone, within a few 20 ms alignment steps (with 8 s of
                # padding the second job's chunk is encoded with a longer input). Only a clip's first
                # start may move more: the pipeline's aligner pulls in a first word after a long pause,
                # and a chunk that is not the first of its call comes after the previous one's speech.
                assert abs(w.end - v.end) <= 0.06
                assert abs(w.start - v.start) <= (0.5 if position == 0 else 0.06)


async def test_stretches_re_heard_whole_are_decoded_each_in_a_full_window(
    model_cache: Path, speech: np.ndarray
) -> None:
    """Two stretches in one call: each is its own chunk (nothing of one is heard in the other), the words
    keep each stretch's own times."""
    backend = FasterWhisperBackend(CorrectorSettings(model_cache_dir=model_cache))
    other = np.asarray(decode_audio(str(DEV_CLEAN), sampling_rate=16000), dtype=np.float32)
    try:
        (iron, dev_clean), seconds = await backend.transcribe_whole(
            [speech, other[: 16000 * 8]], prompt=None, language="en"
        )
        alone = await backend.transcribe(speech, prompt=None, language="en")
        nothing, _ = await backend.transcribe_whole([], prompt=None, language="en")
    finally:
        await backend.aclose()
    assert nothing == [] and seconds > 0
    assert jiwer.wer(REFERENCE, normalise(iron.text)) < 0.3
    assert jiwer.wer(normalise(alone.text), normalise(iron.text)) < 0.15
    assert "iron" not in normalise(dev_clean.text) and dev_clean.words
    duration = len(speech) / 16000
    assert iron.words is not None and len(iron.words) >= 25
    for before, after in pairwise(iron.words):
        assert before.start <= after.start
    assert iron.words[0].start >= 0.0 and iron.words[-1].end <= duration + 0.01
