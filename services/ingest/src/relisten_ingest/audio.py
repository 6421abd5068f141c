"""Decoding an upload with PyAV and normalising it to 16 kHz mono 16-bit PCM in a WAV file.

Whether an upload is audio is decided here, by decoding it, never by its name or Content-Type.
The duration limit is enforced on decoded samples (container headers can say anything) and
decoding stops as soon as the limit is passed. Blocking: run it in a worker thread.
"""

from __future__ import annotations

import logging
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import av
import av.error

log = logging.getLogger(__name__)

SAMPLE_RATE: Final = 16000
SAMPLE_WIDTH: Final = 2

FORMAT_WHITELIST: Final = ",".join(
    [
        "wav", "w64", "rf64", "mp3", "flac", "ogg", "mov", "mp4", "matroska", "webm", "aac",
        "ac3", "eac3", "aiff", "caf", "amr", "au", "asf", "avi", "mpeg", "mpegts", "wv", "ape",
        "tta", "voc", "flv", "dts", "truehd", "mlp", "gsm", "xwma", "spdif",
    ]
)  # fmt: skip
"""Demuxers an upload may be read with. FFmpeg's playlist and concat demuxers (hls, concat,
ffconcat, ...) open further files and URLs named inside the upload; only self-contained audio
containers are allowed, and only the ``file`` protocol."""

MAX_BAD_PACKETS: Final = 16
"""Corrupt packets tolerated (and skipped) in an otherwise decodable file, as players do."""


class AudioRejected(Exception):
    """The upload cannot become a job; ``code`` is the API error code."""

    code = "unsupported_audio"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnsupportedAudio(AudioRejected):
    code = "unsupported_audio"


class NoAudio(AudioRejected):
    code = "no_audio"


class AudioTooLong(AudioRejected):
    code = "audio_too_long"


@dataclass(frozen=True)
class NormalisedAudio:
    """What decoding found: the normalised length and a description of the source."""

    samples: int
    container: str
    codec: str
    source_rate: int
    source_channels: int

    @property
    def duration_s(self) -> float:
        return self.samples / SAMPLE_RATE


def normalise_to_wav(source: Path, target: Path, *, max_samples: int) -> NormalisedAudio:
    """Decode the first audio stream of ``source`` into ``target`` as 16 kHz mono s16 WAV.

    Raises :class:`UnsupportedAudio` (not a decodable audio/video file), :class:`NoAudio` (no
    audio stream, or no samples in it) or :class:`AudioTooLong` (more than ``max_samples``).
    """
    try:
        container = av.open(
            str(source),
            mode="r",
            options={"format_whitelist": FORMAT_WHITELIST, "protocol_whitelist": "file"},
        )
    except av.error.FFmpegError as exc:
        raise UnsupportedAudio(f"the file is not audio this service can decode ({_reason(exc)})") from None

    with container:
        if not container.streams.audio:
            raise NoAudio(f"the {container.format.name} file has no audio stream")
        stream = container.streams.audio[0]
        codec = stream.codec_context.name
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        samples = 0
        bad_packets = 0

        with wave.open(str(target), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(SAMPLE_WIDTH)
            wav.setframerate(SAMPLE_RATE)

            def write(frames: list[av.AudioFrame]) -> None:
                nonlocal samples
                for frame in frames:
                    pcm = frame.to_ndarray().astype("<i2", copy=False)
                    wav.writeframesraw(pcm.tobytes())
                    samples += frame.samples
                    if samples > max_samples:
                        raise AudioTooLong(
                            f"the audio is longer than the limit of {_clock(max_samples / SAMPLE_RATE)}"
                        )

            try:
                for packet in container.demux(stream):
                    try:
                        decoded = packet.decode()
                    except av.error.FFmpegError as exc:
                        bad_packets += 1
                        if bad_packets > MAX_BAD_PACKETS:
                            raise UnsupportedAudio(f"the {codec} audio is corrupt ({_reason(exc)})") from None
                        log.debug("skipping a corrupt %s packet: %s", codec, exc)
                        continue
                    for frame in decoded:
                        write(resampler.resample(frame))
                write(resampler.resample(None))
            except av.error.FFmpegError as exc:
                raise UnsupportedAudio(f"the file could not be decoded ({_reason(exc)})") from None

        if samples == 0:
            raise NoAudio(f"the {container.format.name} file contains no audio samples")
        return NormalisedAudio(
            samples=samples,
            container=container.format.name,
            codec=codec,
            source_rate=stream.codec_context.sample_rate or 0,
            source_channels=stream.codec_context.channels or 0,
        )


def _reason(exc: av.error.FFmpegError) -> str:
    """FFmpeg's message without the temporary file name PyAV appends to it."""
    return exc.strerror or type(exc).__name__


def _clock(seconds: float) -> str:
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
