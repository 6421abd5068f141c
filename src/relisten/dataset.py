"""The development set: its manifest, long-form recordings built from it, its tuning/validation split,
channel-degraded copies, and WER scoring.

Long-form audio follows the set's README: the utterances of one chapter in id order with 0.6 s of
silence between them, so that the second pass's windows cover only part of a file. With ``short``,
the short LibriSpeech utterances (test-clean, dev-clean) are joined the same way per speaker.

**The split** (:func:`split_of`), by speaker so that no voice is on both sides: within each subset the
speakers sorted by numeric id alternate validation, tuning, validation, ... (test-other: 1688, 2033,
2609 validation, 1998, 2414 tuning; test-clean: 61, 1995 validation, 1089 tuning; dev-clean: 1272,
2412 validation, 1988, 3752 tuning); the three sonnet readings (one LibriVox reader) are tuning. Channel-degraded copies
belong to the split of the recording they were made from. Levers are tuned on the tuning part and
decided on the validation part only.

**Degraded copies** (:func:`degrade`) are made at run time from the real recordings, deterministically
(no randomness, no files written): ``tel`` is an 8 kHz telephone channel (300-3400 Hz band, G.711
mu-law 8-bit), ``mp3`` a 16 kbit/s mono mp3 (libmp3lame through PyAV), ``opus`` an 8 kbit/s opus
(libopus), ``speed0.9``/``speed1.1`` the recording played 10 % slower/faster (tape-style resampling,
pitch moves with it). Utterance times follow the audio.

LibriSpeech test-other speakers 3005, 3080, 3331, 367 and 533 are kept apart for independent checks:
nothing here loads them (:data:`HELD_OUT_SPEAKERS`; loading one raises).
"""

from __future__ import annotations

import io
import json
import re
import wave
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import av
import numpy as np
from relisten_runtime.audio import SAMPLE_RATE as SAMPLE_RATE

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "librispeech-dev"
GAP_S = 0.6
HELD_OUT_SPEAKERS = frozenset({"3005", "3080", "3331", "367", "533"})
"""LibriSpeech test-other speakers never used here: kept apart for independent checks."""
SONNET_READER = "librivox-sonnets"
DEGRADATIONS = ("tel", "mp3", "opus", "speed0.9", "speed1.1")
Split = Literal["tuning", "validation"]


@dataclass(frozen=True)
class Utterance:
    """One reference utterance inside a recording: where it is and what was said."""

    start_s: float
    end_s: float
    reference: str


@dataclass(frozen=True)
class Recording:
    name: str
    audio: np.ndarray
    """16 kHz mono float32."""
    reference: str
    speaker: str = ""
    """Who speaks (LibriSpeech speaker id, or ``SONNET_READER``); decides the split."""
    utterances: tuple[Utterance, ...] = ()
    """The reference utterances in time order (empty: the recording is one unit)."""
    subset: str = ""

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


def speaker_of(item_id: str) -> str | None:
    chapter = chapter_of(item_id)
    return chapter.split("-")[0] if chapter else None


def split_of(recording: Recording) -> Split:
    """The part of the development material ``recording`` belongs to (see the module docstring)."""
    return _SPLIT.get(recording.speaker, "validation")


def _speaker_split(manifest: Sequence[dict[str, object]]) -> dict[str, Split]:
    """Within each subset, speakers sorted by numeric id alternate validation, tuning, ...; the sonnet
    reader is tuning."""
    by_subset: dict[str, set[str]] = defaultdict(set)
    for item in manifest:
        speaker = speaker_of(str(item["id"]))
        if speaker is not None:
            by_subset[str(item.get("subset"))].add(speaker)
    split: dict[str, Split] = {SONNET_READER: "tuning"}
    for speakers in by_subset.values():
        for rank, speaker in enumerate(sorted(speakers, key=int)):
            split[speaker] = "tuning" if rank % 2 else "validation"
    return split


_SPLIT: dict[str, Split] = {}


def _joined_items(data_dir: Path, name: str, speaker: str, items: list[dict[str, object]]) -> Recording:
    """``items`` in id order, 0.6 s of silence between them, each one an utterance."""
    items = sorted(items, key=lambda item: str(item["id"]))
    parts = [decode(data_dir / str(item["audio"])) for item in items]
    utterances: list[Utterance] = []
    at = 0.0
    for part, item in zip(parts, items, strict=True):
        utterances.append(Utterance(at, at + len(part) / SAMPLE_RATE, str(item["reference"])))
        at += (len(part) + int(GAP_S * SAMPLE_RATE)) / SAMPLE_RATE
    return Recording(
        name,
        _with_gaps(parts, GAP_S),
        " ".join(u.reference for u in utterances),
        speaker=speaker,
        utterances=tuple(utterances),
        subset=str(items[0].get("subset", "")),
    )


def long_form_recordings(
    data_dir: Path = DEFAULT_DATA_DIR, include_sonnets: bool = True, *, short: bool = False
) -> list[Recording]:
    """One recording per LibriSpeech chapter with ten or more utterances, plus each long-form reading;
    with ``short``, also one per speaker of the remaining (short) LibriSpeech utterances."""
    manifest = load_manifest(data_dir)
    _SPLIT.update(_speaker_split(manifest))
    by_chapter: dict[str, list[dict[str, object]]] = defaultdict(list)
    recordings: list[Recording] = []
    for item in manifest:
        speaker = speaker_of(str(item["id"]))
        if speaker in HELD_OUT_SPEAKERS:
            raise ValueError(f"{item['id']}: speaker {speaker} is held out for independent checks")
        chapter = chapter_of(str(item["id"]))
        if chapter is not None:
            by_chapter[chapter].append(item)
        elif include_sonnets and item.get("subset") == "long-form":
            audio = decode(data_dir / str(item["audio"]))
            recordings.append(
                Recording(
                    str(item["id"]),
                    audio,
                    str(item["reference"]),
                    speaker=SONNET_READER,
                    utterances=(Utterance(0.0, len(audio) / SAMPLE_RATE, str(item["reference"])),),
                    subset="long-form",
                )
            )
    by_speaker: dict[str, list[dict[str, object]]] = defaultdict(list)
    for chapter, items in sorted(by_chapter.items()):
        speaker = chapter.split("-")[0]
        if len(items) >= 10:
            recordings.append(_joined_items(data_dir, f"chapter-{chapter}", speaker, items))
        else:
            by_speaker[speaker].extend(items)
    if short:
        for speaker, items in sorted(by_speaker.items()):
            recordings.append(_joined_items(data_dir, f"speaker-{speaker}", speaker, items))
    return sorted(recordings, key=lambda r: r.name)


# --- channel-degraded copies -------------------------------------------------------------------------


def degrade(recording: Recording, kind: str) -> Recording:
    """A copy of ``recording`` through a worse channel (see the module docstring); deterministic."""
    if kind == "tel":
        audio = _telephone(recording.audio)
        factor = 1.0
    elif kind == "mp3":
        audio = _codec_round_trip(recording.audio, "libmp3lame", "mp3", bit_rate=16_000, rate=16_000)
        factor = 1.0
    elif kind == "opus":
        audio = _codec_round_trip(recording.audio, "libopus", "ogg", bit_rate=8_000, rate=48_000)
        factor = 1.0
    elif kind.startswith("speed"):
        factor = float(kind.removeprefix("speed"))
        count = round(len(recording.audio) / factor)
        audio = np.interp(np.arange(count) * factor, np.arange(len(recording.audio)), recording.audio).astype(
            np.float32
        )
    else:
        raise ValueError(f"unknown degradation {kind!r}; known: {', '.join(DEGRADATIONS)}")
    audio = audio[: round(len(recording.audio) / factor)]
    return replace(
        recording,
        name=f"{recording.name}~{kind}",
        audio=audio.astype(np.float32),
        utterances=tuple(
            Utterance(u.start_s / factor, u.end_s / factor, u.reference) for u in recording.utterances
        ),
    )


def _telephone(audio: np.ndarray) -> np.ndarray:
    """8 kHz, 300-3400 Hz, mu-law 8-bit, back at 16 kHz."""
    narrow = _resample(audio, SAMPLE_RATE, 8000)
    spectrum = np.fft.rfft(narrow)
    freqs = np.fft.rfftfreq(len(narrow), 1 / 8000)
    spectrum[(freqs < 300) | (freqs > 3400)] = 0
    band = np.clip(np.fft.irfft(spectrum, len(narrow)), -1.0, 1.0)
    mu = 255.0
    code = np.round(np.sign(band) * np.log1p(mu * np.abs(band)) / np.log1p(mu) * 127) / 127
    expanded = np.sign(code) * np.expm1(np.abs(code) * np.log1p(mu)) / mu
    return _resample(expanded.astype(np.float32), 8000, SAMPLE_RATE)


def _resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Band-limited resampling through PyAV's (libswresample) resampler."""
    frame = av.AudioFrame.from_ndarray(_to_s16(audio)[None, :], format="s16", layout="mono")
    frame.sample_rate = rate_in
    resampler = av.AudioResampler(format="s16", layout="mono", rate=rate_out)
    out = [f.to_ndarray().reshape(-1) for f in [*resampler.resample(frame), *resampler.resample(None)]]
    return np.concatenate(out).astype(np.float32) / 32768.0 if out else np.zeros(0, np.float32)


def _to_s16(audio: np.ndarray) -> np.ndarray:
    pcm: np.ndarray = (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)
    return pcm


def _codec_round_trip(
    audio: np.ndarray, codec: str, container: str, *, bit_rate: int, rate: int
) -> np.ndarray:
    """``audio`` encoded with ``codec`` at ``bit_rate`` (mono, ``rate`` Hz) and decoded back to 16 kHz."""
    out = io.BytesIO()
    with av.open(out, "w", format=container) as sink:
        stream: Any = sink.add_stream(codec, rate=rate, layout="mono")
        stream.bit_rate = bit_rate
        resampler = av.AudioResampler(format=stream.format.name, layout="mono", rate=rate)
        frame = av.AudioFrame.from_ndarray(_to_s16(audio)[None, :], format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame_size = stream.codec_context.frame_size or 1024
        fifo = av.AudioFifo()
        for piece in [*resampler.resample(frame), *resampler.resample(None)]:
            fifo.write(piece)
        while fifo.samples:
            chunk = fifo.read(min(frame_size, fifo.samples), partial=True)
            if chunk is None:
                break
            for packet in stream.encode(chunk):
                sink.mux(packet)
        for packet in stream.encode(None):
            sink.mux(packet)
    out.seek(0)
    chunks: list[np.ndarray] = []
    source: Any
    with av.open(out) as source:
        back = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        for decoded in source.decode(audio=0):
            chunks.extend(f.to_ndarray().reshape(-1) for f in back.resample(decoded))
        chunks.extend(f.to_ndarray().reshape(-1) for f in back.resample(None))
    decoded_audio = np.concatenate(chunks).astype(np.float32) / 32768.0
    # Encoders add priming samples at the start; find the delay by cross-correlating the first seconds.
    head = min(len(audio), 4 * SAMPLE_RATE)
    lags = range(0, min(4000, len(decoded_audio) - head))
    best = max(
        lags, key=lambda lag: float(np.dot(decoded_audio[lag : lag + head : 4], audio[:head:4])), default=0
    )
    aligned = decoded_audio[best : best + len(audio)]
    return np.pad(aligned, (0, len(audio) - len(aligned)))


def development_recordings(
    data_dir: Path = DEFAULT_DATA_DIR,
    *,
    names: Sequence[str] | None = None,
    limit: int = 0,
    join: bool = False,
    split: Split | None = None,
    short: bool = False,
    degraded: Sequence[str] = (),
) -> list[Recording]:
    """The long-form recordings a benchmark runs on: those named (all when ``names`` is None) of
    ``split`` (both when None), the first ``limit`` of them (all when 0), each followed by its
    ``degraded`` copies, joined into one recording when ``join``: then grouped by channel (every
    original, then every copy of the first kind, ...), since a recording followed by its own copies
    would say the same sentences several times back to back, which no real recording does and the first
    pass's screen rightly takes for a repetition loop."""
    recordings = long_form_recordings(data_dir, short=short)
    if split is not None:
        recordings = [recording for recording in recordings if split_of(recording) == split]
    if names is not None:
        recordings = [recording for recording in recordings if recording.name in names]
    if limit:
        recordings = recordings[:limit]
    if degraded and join:
        recordings = [*recordings, *(degrade(r, kind) for kind in degraded for r in recordings)]
    elif degraded:
        recordings = [copy for r in recordings for copy in (r, *(degrade(r, kind) for kind in degraded))]
    if join and recordings:
        recordings = [joined(recordings)]
    return recordings


def joined(recordings: list[Recording], gap_s: float = 2.0) -> Recording:
    """The recordings as one long recording, in order, ``gap_s`` of silence between them (the shape
    of an hour-long upload: the second pass's chunks then fill up as they would on one)."""
    utterances: list[Utterance] = []
    at = 0.0
    for r in recordings:
        own = r.utterances or (Utterance(0.0, r.duration_s, r.reference),)
        utterances += [Utterance(at + u.start_s, at + u.end_s, u.reference) for u in own]
        at += r.duration_s + int(gap_s * SAMPLE_RATE) / SAMPLE_RATE
    return Recording(
        f"joined-{len(recordings)}",
        _with_gaps([r.audio for r in recordings], gap_s),
        " ".join(r.reference for r in recordings),
        utterances=tuple(utterances),
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
