"""The audio a handler works on, read from the audio store: there and well-formed, or the job fails.

asr (the whole recording), clipper (the recording it cuts) and corrector (each clip) all start by
reading a normalised WAV. Missing or malformed audio will not get better on redelivery, so it is a
:class:`PermanentFailure` with a stable code (``audio_missing``/``audio_invalid``, or
``clip_missing``/``clip_invalid`` for a clip).
"""

from __future__ import annotations

from typing import Literal

from nats.js.errors import NotFoundError

from relisten_runtime.audio import NotNormalisedAudio, pcm_from_wav
from relisten_runtime.infra import Infra
from relisten_runtime.worker import PermanentFailure


async def load_pcm(infra: Infra, ref: str, kind: Literal["audio", "clip"] = "audio") -> bytes:
    """The 16 kHz mono 16-bit PCM stored under ``ref`` in the audio store."""
    try:
        return pcm_from_wav(await infra.get_blob(infra.audio, ref))
    except NotFoundError as exc:
        what = f"normalised audio {ref}" if kind == "audio" else f"clip {ref}"
        raise PermanentFailure(f"{kind}_missing", f"{what} is not stored") from exc
    except NotNormalisedAudio as exc:
        what = "stored audio" if kind == "audio" else f"clip {ref}"
        raise PermanentFailure(f"{kind}_invalid", f"{what} is unusable: {exc}") from exc
