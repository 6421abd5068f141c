"""Decoding and normalising real audio with PyAV; rejecting what is not audio."""

from __future__ import annotations

import random
import wave
from pathlib import Path

import av
import numpy as np
import pytest
from relisten_ingest.audio import AudioTooLong, NoAudio, UnsupportedAudio, normalise_to_wav

AUDIO_FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "audio"
SPEECH_WAV = AUDIO_FIXTURES / "ls-dev-clean-1272-128104-0000.wav"
STEREO_MP3 = AUDIO_FIXTURES / "long-librivox-shakespeare-sonnet-001.mp3"
HOUR = 3600 * 16000


def read_wav(path: Path) -> tuple[tuple[int, int, int], bytes]:
    with wave.open(str(path), "rb") as wav:
        return (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()), wav.readframes(wav.getnframes())


def test_wav_is_copied_sample_for_sample(tmp_path: Path) -> None:
    target = tmp_path / "out.wav"
    audio = normalise_to_wav(SPEECH_WAV, target, max_samples=HOUR)
    assert audio.samples == 93680
    assert audio.duration_s == pytest.approx(5.855)
    assert (audio.container, audio.source_rate, audio.source_channels) == ("wav", 16000, 1)
    params, pcm = read_wav(target)
    assert params == (1, 2, 16000)
    _, original = read_wav(SPEECH_WAV)
    assert pcm == original  # already 16 kHz mono s16: the resampler must not change a sample


def test_stereo_mp3_is_resampled_to_16k_mono(tmp_path: Path) -> None:
    target = tmp_path / "out.wav"
    audio = normalise_to_wav(STEREO_MP3, target, max_samples=HOUR)
    assert (audio.container, audio.source_rate, audio.source_channels) == ("mp3", 44100, 2)
    assert audio.duration_s == pytest.approx(53.267, abs=0.05)
    params, pcm = read_wav(target)
    assert params == (1, 2, 16000)
    assert len(pcm) == 2 * audio.samples
    samples = np.frombuffer(pcm, dtype="<i2")
    assert np.abs(samples).max() > 1000  # speech, not silence


def test_decoding_stops_once_the_limit_is_passed(tmp_path: Path) -> None:
    target = tmp_path / "out.wav"
    with pytest.raises(AudioTooLong, match="0:02"):
        normalise_to_wav(STEREO_MP3, target, max_samples=2 * 16000)
    # Decoding stopped right after the limit, not at the end of the 53 s file.
    assert target.stat().st_size < 2 * 16000 * 2 + 64 * 1024


def test_video_without_audio_has_no_audio(tmp_path: Path) -> None:
    source = tmp_path / "video.mp4"
    with av.open(str(source), "w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height = 32, 32
        for _ in range(5):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    with pytest.raises(NoAudio, match="no audio stream"):
        normalise_to_wav(source, tmp_path / "out.wav", max_samples=HOUR)


def test_wav_header_without_samples_has_no_audio(tmp_path: Path) -> None:
    source = tmp_path / "header-only"
    source.write_bytes(SPEECH_WAV.read_bytes()[:44])
    with pytest.raises(NoAudio, match="no audio samples"):
        normalise_to_wav(source, tmp_path / "out.wav", max_samples=HOUR)


@pytest.mark.parametrize(
    "content",
    [
        b"hello, this is a text file pretending to be a WAV\n" * 20,
        random.Random(7).randbytes(20000),
        SPEECH_WAV.read_bytes()[:30],
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>',
        b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:6,\nfile:///etc/hostname\n#EXT-X-ENDLIST\n",
        b"ffconcat version 1.0\nfile '/etc/hostname'\n",
    ],
    ids=["text", "random", "truncated-header", "svg", "hls-playlist", "concat-list"],
)
def test_not_audio(tmp_path: Path, content: bytes) -> None:
    source = tmp_path / "upload"
    source.write_bytes(content)
    with pytest.raises(UnsupportedAudio):
        normalise_to_wav(source, tmp_path / "out.wav", max_samples=HOUR)
