"""Clips cut from a real recording: byte for byte what the clipper wrote when it cut them with pydub
(``AudioSegment.get_sample_slice(...).export(format="wav")``; the digests below were taken from that
code on this fixture before pydub was dropped), and the samples are exactly the recording's."""

from __future__ import annotations

import hashlib
import io
import wave
from pathlib import Path

import pytest
from relisten_clipper.clips import cut_clip

RECORDING = (
    Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "audio" / "ls-dev-clean-1272-128104-0000.wav"
)


@pytest.fixture(scope="module")
def pcm() -> bytes:
    with wave.open(str(RECORDING), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16000, 1, 2)
        return wav.readframes(wav.getnframes())


PYDUB_CLIPS = [
    (0, 93680, "79a003da951710b76da63b1220e29e16f361220429c9a024c87667d3c98946b7"),
    (16000, 32000, "3d32a6ad3685abca6d38ddc8df0e92292dc26ecad0398602325678ad9283ca2e"),
    (12345, 67891, "fc692892c97a0c8150de291ceaa725665f1ba001442c3f8dc12c35952929fe80"),
    (93580, 93680, "09ae8e92d222f2b1c4656b1c23ce7edfa3e6732d328c336b73080a6200e86804"),
    (500, 500, "ba584a378b11d9e9c98736fd8c256fe1453a84ee4139416d24b07acff424f0fb"),
    (93675, 93730, "6cf58adeec883188b63b9d88e818e2eb653b0ba4f2263cb17e435ffc94b8208b"),
    (-10, 40, "a57fd0d256cabfeb44ca07b5f2d4df7e9f731e0a302997a303eace685dcc8300"),
]


@pytest.mark.parametrize(("first", "end", "digest"), PYDUB_CLIPS)
def test_clips_are_byte_identical_to_the_pydub_cut(pcm: bytes, first: int, end: int, digest: str) -> None:
    assert hashlib.sha256(cut_clip(pcm, first, end)).hexdigest() == digest


def test_a_clip_holds_exactly_the_recording_s_samples(pcm: bytes) -> None:
    with wave.open(io.BytesIO(cut_clip(pcm, 12345, 67891)), "rb") as clip:
        assert (clip.getframerate(), clip.getnchannels(), clip.getsampwidth()) == (16000, 1, 2)
        assert clip.readframes(clip.getnframes()) == pcm[12345 * 2 : 67891 * 2]
