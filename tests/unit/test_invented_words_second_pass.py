"""The second pass removes first-pass words marked as likely invented, through the real clipper, the
real corrector backend (bundled Whisper base) and the merger's guard.

The first pass is the real tiny.en decode of a LibriSpeech utterance followed by 3 s of faint noise,
plus a stock phrase over that noise marked the way the first pass's hallucination checks mark one
they cannot prove invented (probability capped at 0.01)."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import msgspec
import numpy as np
import pytest
from faster_whisper import decode_audio
from relisten_asr.engines import FasterWhisperEngine
from relisten_asr.hallucination import SUSPECT_PROBABILITY
from relisten_asr.settings import AsrSettings
from relisten_clipper.domain import ClipPolicy, find_windows, to_sample_range
from relisten_clipper.settings import ClipperSettings
from relisten_contracts import Segment, Word
from relisten_corrector.backends import FasterWhisperBackend
from relisten_corrector.handlers import answered
from relisten_corrector.settings import CorrectorSettings
from relisten_merger.domain import MergePolicy, merge, transcript_text
from relisten_merger.settings import MergerSettings

from relisten.dataset import normalise_text
from relisten.replay import windows_to_merge

SR = 16000
SPEECH = Path(__file__).resolve().parents[1] / "fixtures" / "audio" / "ls-dev-clean-1272-128104-0000.wav"


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_stock_phrase_marked_over_noise_is_removed_by_the_second_pass() -> None:
    speech = np.asarray(decode_audio(str(SPEECH), sampling_rate=SR), dtype=np.float32)
    noise = np.random.default_rng(0).normal(0, 10 ** (-50 / 20), 3 * SR).astype(np.float32)
    audio = np.concatenate([speech, noise])
    first = asyncio.run(FasterWhisperEngine(AsrSettings()).transcribe(audio, language="en", prompt=None))
    heard = normalise_text(" ".join(w.word for w in first.words))
    assert "gospel" in heard and "thank" not in heard

    at = len(speech) / SR + 1.0
    invented = [
        Word(word="Thank", start=at, end=at + 0.4, probability=SUSPECT_PROBABILITY),
        Word(word="you.", start=at + 0.4, end=at + 0.7, probability=SUSPECT_PROBABILITY),
    ]
    segment = Segment(
        start=at,
        end=at + 0.7,
        text="Thank you.",
        avg_logprob=-1.0,
        compression_ratio=0.58,
        no_speech_prob=0.3,
        first_word=len(first.words),
        last_word=len(first.words) + 2,
    )
    first = msgspec.structs.replace(
        first, words=[*first.words, *invented], segments=[*first.segments, segment]
    )

    # A 9 s recording: the default budget (20 % of the audio) cannot hold this window; a long
    # recording's can, and the budget is the clipper's business, not what is tested here.
    policy = dataclasses.replace(
        ClipPolicy(**ClipperSettings().policy_fields()),  # type: ignore[arg-type]
        max_redecode_fraction=1.0,
    )
    windows = find_windows(first.words, first.segments, first.duration_s, policy)
    assert any(len(first.words) - 1 in window.flagged for window in windows)
    ranges = [to_sample_range(w.start_s, w.end_s, SR, len(audio)) for w in windows]
    backend = FasterWhisperBackend(CorrectorSettings())
    backend.load()
    answers = asyncio.run(
        backend.transcribe_many([audio[lo:hi] for lo, hi in ranges], prompt=None, language="en")
    )
    results = {
        index: answered(index, backend.name, answer, lo / SR, (hi - lo) / SR, 0.0)
        for index, ((lo, hi), answer) in enumerate(zip(ranges, answers, strict=True))
    }
    words, corrections = merge(
        first,
        windows_to_merge(windows, ranges),
        results,
        MergePolicy(**MergerSettings().policy_fields()),  # type: ignore[arg-type]
    )
    text = normalise_text(transcript_text(words))
    print(text, [(c.status, c.original_text, c.corrected_text, c.reason) for c in corrections])
    assert "thank" not in text
    assert "gospel" in text
    removing = [c for c in corrections if "Thank you." in c.original_text]
    assert removing and removing[0].status == "accepted"
