"""Pure parts of the corrector's backends: answer cleaning, WAV encoding, retry timing, settings."""

from __future__ import annotations

import email.utils
import io
import random
import time
import wave
from itertools import pairwise

import httpx
import numpy as np
import pytest
from relisten_corrector.backends import split_at_pauses, transcription_instruction, words_from_verbose_json
from relisten_corrector.cleaning import clean_answer
from relisten_corrector.settings import CorrectorSettings
from relisten_runtime.remote import (
    RemoteCallError as BackendError,
)
from relisten_runtime.remote import (
    RetryPolicy,
    api_root,
    pcm16_from_float,
    retry_after_s,
    wav_from_float,
)

CLEANING_CASES = [
    # Lead-ins the brief and Qwen2-Audio are known for.
    ('The speaker says: "There\'s iron, they say."', "There's iron, they say."),
    ("Sure! Here is the transcription: there's iron", "there's iron"),
    ("Transcription: hello world", "hello world"),
    ("The audio says hello world", "hello world"),
    ("The original content of this audio is: 'hello world'", "hello world"),
    ('Sure, here\'s the transcript of the audio:\n\n"Hello world."', "Hello world."),
    ("In the audio, the speaker says that the meeting is at noon.", "the meeting is at noon."),
    ("The transcript is: hello", "hello"),
    ("Sure!\nhello world", "hello world"),
    ("Certainly! The speaker says, ‘grain or two’.", "grain or two."),
    # Wrapping quotes, straight and curly, with the full stop inside or outside.
    ("“Hello world.”", "Hello world."),
    ("'there's iron in our blood'", "there's iron in our blood"),
    ('"Hello world".', "Hello world."),
    # Markdown and notes.
    ("**Hello world**", "Hello world"),
    ("```\nhello world\n```", "hello world"),
    ("hello world (inaudible)", "hello world"),
    ("hello world (The speaker sounds tired.)", "hello world"),
    ("hello [music] world", "hello world"),
    ("Hello world.\n\nNote: the audio was noisy.", "Hello world."),
    ("Transcription: hello\nTranslation: bonjour", "hello"),
    (
        "Here is the exact transcription of the audio clip:\n“But his, he makes me harshly feel.”\n"
        "(Note: some words were unclear.)",
        "But his, he makes me harshly feel.",
    ),
    # Nothing said.
    ("There is no speech in this audio.", ""),
    ("(inaudible)", ""),
    ("The audio is unintelligible.", ""),
    ("", ""),
    (None, ""),
    # Speech that merely looks like chat talk stays whole.
    ("Yes, I will come.", "Yes, I will come."),
    ("Okay so we begin", "Okay so we begin"),
    ("Of course he did.", "Of course he did."),
    ("Sure.", "Sure."),
    ('"Hi," he said, "bye."', '"Hi," he said, "bye."'),
    ("The man said that he would come.", "The man said that he would come."),
    ("Here is the text I promised you.", "Here is the text I promised you."),
    ("a grain or two (perhaps) is good", "a grain or two (perhaps) is good"),
]


@pytest.mark.parametrize(("answer", "expected"), CLEANING_CASES)
def test_clean_answer(answer: str | None, expected: str) -> None:
    assert clean_answer(answer) == expected


def test_clean_answer_is_idempotent() -> None:
    for answer, _ in CLEANING_CASES:
        once = clean_answer(answer)
        assert clean_answer(once) == once


def _read_wav(data: bytes) -> tuple[int, int, int, np.ndarray]:
    with wave.open(io.BytesIO(data), "rb") as wav:
        frames = wav.readframes(wav.getnframes())
        return wav.getframerate(), wav.getnchannels(), wav.getsampwidth(), np.frombuffer(frames, dtype="<i2")


def test_wav_from_float_is_16k_mono_s16_and_round_trips_pcm() -> None:
    pcm = np.random.default_rng(1).integers(-32768, 32767, size=16000 * 2 + 7, dtype=np.int16)
    audio = pcm.astype(np.float32) / 32768.0
    rate, channels, width, samples = _read_wav(wav_from_float(audio))
    assert (rate, channels, width) == (16000, 1, 2)
    np.testing.assert_array_equal(samples, pcm)


def test_pcm16_clips_out_of_range_and_non_finite_samples() -> None:
    samples = np.frombuffer(pcm16_from_float(np.array([2.0, -2.0, np.nan, 0.5, -1.0])), dtype="<i2")
    assert samples.tolist() == [32767, -32768, 0, 16384, -32768]


def test_retry_after_reads_seconds_and_http_dates() -> None:
    def with_header(value: str) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": value})

    assert retry_after_s(with_header("3")) == 3.0
    assert retry_after_s(with_header("0.5")) == 0.5
    assert retry_after_s(with_header("soon")) is None
    assert retry_after_s(httpx.Response(429)) is None
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= (retry_after_s(with_header(later)) or 0) <= 31


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    policy = RetryPolicy(max_attempts=10, backoff_s=1.0, max_backoff_s=5.0)
    rng = random.Random(0)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (9, 5.0)]:
        delays = [policy.delay(attempt, rng) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1


def test_api_root_accepts_a_trailing_v1() -> None:
    assert api_root("http://gpu:8000/v1/") == "http://gpu:8000"
    assert api_root("http://gpu:8000") == "http://gpu:8000"


def test_settings_read_their_own_namespace_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELISTEN_API_KEY", "ingest-key-must-not-leak")
    monkeypatch.setenv("RELISTEN_BASE_URL", "http://wrong:1")
    monkeypatch.setenv("RELISTEN_NATS_URL", "nats://shared:4222")
    monkeypatch.setenv("RELISTEN_CORRECTOR_BACKEND", "vllm")
    monkeypatch.setenv("RELISTEN_CORRECTOR_BASE_URL", "http://gpu:8000")
    settings = CorrectorSettings()
    assert settings.api_key is None
    assert settings.base_url == "http://gpu:8000"
    assert settings.nats_url == "nats://shared:4222"
    assert settings.backend == "vllm"
    assert settings.remote_model() == "Qwen/Qwen2-Audio-7B-Instruct"

    monkeypatch.setenv("RELISTEN_CORRECTOR_API_KEY", "gpu-key")
    assert CorrectorSettings().api_key is not None
    assert CorrectorSettings(backend="openai", model="m").remote_model() == "m"
    assert CorrectorSettings(backend="openai").remote_model() == "whisper-1"
    assert CorrectorSettings().second_pass_model == "bundled:base"


def test_instruction_carries_glossary_and_language() -> None:
    text = transcription_instruction("Margaret Hale, Milton", "en")
    assert "Margaret Hale, Milton" in text and "'en'" in text
    assert "Margaret" not in transcription_instruction(None, None)


def test_verbose_json_words_defaults_and_fallbacks() -> None:
    body = {
        "text": "a b",
        "words": [
            {"word": " a", "start": 0.1, "end": 0.3},
            {"word": "b", "start": 0.3, "end": 0.2, "probability": 0.4},
        ],
    }
    words = words_from_verbose_json(body)
    assert words is not None
    assert [(w.word, w.start, w.end, w.probability) for w in words] == [
        ("a", 0.1, 0.3, 1.0),
        ("b", 0.3, 0.3, 0.4),
    ]
    in_segments = {
        "text": "a",
        "segments": [{"words": [{"word": "a", "start": 0.0, "end": 0.1, "probability": 0.9}]}],
    }
    assert [w.word for w in words_from_verbose_json(in_segments) or []] == ["a"]
    assert words_from_verbose_json({"text": "a"}) is None
    with pytest.raises(BackendError):
        words_from_verbose_json({"words": [{"word": "a", "start": "x", "end": 1}]})


def test_long_clips_are_split_at_pauses() -> None:
    rate = 16000
    rng = np.random.default_rng(3)
    audio = (rng.standard_normal(rate * 70) * 0.3).astype(np.float32)
    pauses = [(22 * rate, int(22.4 * rate)), (47 * rate, int(47.3 * rate))]
    for start, end in pauses:
        audio[start:end] = 0.0
    pieces = split_at_pauses(audio, 30 * rate)
    assert pieces[0][0] == 0 and pieces[-1][1] == len(audio)
    assert all(a[1] == b[0] for a, b in pairwise(pieces))
    assert all(0 < end - start <= 30 * rate for start, end in pieces)
    cuts = [end for _, end in pieces[:-1]]
    assert len(cuts) == 2
    for cut, (start, end) in zip(cuts, pauses, strict=True):
        assert start <= cut <= end
    assert split_at_pauses(audio[: 30 * rate], 30 * rate) == [(0, 30 * rate)]
    assert split_at_pauses(audio[:0], 30 * rate) == [(0, 0)]
