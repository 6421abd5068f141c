"""The development set: its manifest, long-form recordings built from it, and WER scoring.

Long-form audio follows the set's README: the utterances of one chapter in id order with 0.6 s of
silence between them, so that the second pass's windows cover only part of a file.
"""

from __future__ import annotations

import io
import json
import re
import wave
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "librispeech-dev"
SAMPLE_RATE = 16000
GAP_S = 0.6


@dataclass(frozen=True)
class Recording:
    name: str
    audio: np.ndarray
    """16 kHz mono float32."""
    reference: str

    @property
    def duration_s(self) -> float:
        return len(self.audio) / SAMPLE_RATE

    def wav_bytes(self) -> bytes:
        pcm = (np.clip(self.audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        out = io.BytesIO()
        with wave.open(out, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(SAMPLE_RATE)
            wav.writeframes(pcm)
        return out.getvalue()


def load_manifest(data_dir: Path = DEFAULT_DATA_DIR) -> list[dict[str, object]]:
    with (data_dir / "manifest.jsonl").open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def decode(path: Path) -> np.ndarray:
    """Any audio file to 16 kHz mono float32."""
    chunks: list[np.ndarray] = []
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32) / 32768.0


def chapter_of(item_id: str) -> str | None:
    match = re.match(r"ls-[a-z]+-[a-z]+-(\d+-\d+)-\d+$", item_id)
    return match.group(1) if match else None


def long_form_recordings(data_dir: Path = DEFAULT_DATA_DIR, include_sonnets: bool = True) -> list[Recording]:
    """One recording per LibriSpeech chapter with ten or more utterances, plus each long-form reading."""
    by_chapter: dict[str, list[dict[str, object]]] = defaultdict(list)
    recordings: list[Recording] = []
    for item in load_manifest(data_dir):
        chapter = chapter_of(str(item["id"]))
        if chapter is not None:
            by_chapter[chapter].append(item)
        elif include_sonnets and item.get("subset") == "long-form":
            recordings.append(
                Recording(str(item["id"]), decode(data_dir / str(item["audio"])), str(item["reference"]))
            )
    for chapter, items in sorted(by_chapter.items()):
        if len(items) < 10:
            continue
        items.sort(key=lambda item: str(item["id"]))
        audio = _with_gaps([decode(data_dir / str(item["audio"])) for item in items], GAP_S)
        reference = " ".join(str(item["reference"]) for item in items)
        recordings.insert(0, Recording(f"chapter-{chapter}", audio, reference))
    return sorted(recordings, key=lambda r: r.name)


def development_recordings(
    data_dir: Path = DEFAULT_DATA_DIR,
    *,
    names: Sequence[str] | None = None,
    limit: int = 0,
    join: bool = False,
) -> list[Recording]:
    """The long-form recordings a benchmark runs on: those named (all when ``names`` is None), the
    first ``limit`` of them (all when 0), joined into one recording when ``join``."""
    recordings = long_form_recordings(data_dir)
    if names is not None:
        recordings = [recording for recording in recordings if recording.name in names]
    if limit:
        recordings = recordings[:limit]
    if join and recordings:
        recordings = [joined(recordings)]
    return recordings


def joined(recordings: list[Recording], gap_s: float = 2.0) -> Recording:
    """The recordings as one long recording, in order, ``gap_s`` of silence between them (the shape
    of an hour-long upload: the second pass's chunks then fill up as they would on one)."""
    return Recording(
        f"joined-{len(recordings)}",
        _with_gaps([r.audio for r in recordings], gap_s),
        " ".join(r.reference for r in recordings),
    )


def _with_gaps(parts: Sequence[np.ndarray], gap_s: float) -> np.ndarray:
    """``parts`` one after another with ``gap_s`` of silence between each two."""
    gap = np.zeros(int(gap_s * SAMPLE_RATE), dtype=np.float32)
    return np.concatenate([piece for part in parts for piece in (part, gap)][:-1])


_NUMBER_WORDS = {
    "1": "one",
    "2": "two",
    "3": "three",
    "4": "four",
    "5": "five",
    "6": "six",
    "7": "seven",
    "8": "eight",
    "9": "nine",
    "10": "ten",
}


def normalise_text(text: str) -> str:
    """Scoring normalisation: lower case, hyphens to spaces, punctuation dropped, small numbers as words,
    titles spelt out as LibriSpeech spells them."""
    text = text.lower().replace("-", " ").replace("’", "'")
    text = re.sub(r"\bmr\.?(?=\s)", "mister", text)
    text = re.sub(r"\bmrs\.?(?=\s)", "missus", text)
    text = re.sub(r"\bdr\.?(?=\s)", "doctor", text)
    text = re.sub(r"[^a-z0-9' ]+", " ", text)
    words = [_NUMBER_WORDS.get(word, word) for word in text.split()]
    return " ".join(word.strip("'") for word in words if word.strip("'"))


def word_error_rate(reference: str, hypothesis: str) -> float:
    import jiwer

    return float(jiwer.wer(normalise_text(reference), normalise_text(hypothesis)))
