"""Loading stored audio against a real nats-server: present and well-formed it is PCM; missing or
malformed it is a permanent failure with the code the job view and clients see."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from relisten_runtime.audio import pcm16_from_float, pcm16_to_float, wav_bytes
from relisten_runtime.embedded import EmbeddedNats, free_port
from relisten_runtime.infra import Infra, open_infra
from relisten_runtime.stored_audio import load_pcm
from relisten_runtime.worker import PermanentFailure


def test_pcm16_to_float_inverts_pcm16_from_float() -> None:
    pcm = np.array([-32768, -1, 0, 1, 16384, 32767], dtype="<i2").tobytes()
    samples = pcm16_to_float(pcm)
    assert samples.dtype == np.float32
    assert samples[0] == -1.0 and samples[2] == 0.0 and samples[4] == 0.5
    assert pcm16_from_float(samples) == pcm


@pytest.fixture
async def infra(tmp_path: Path) -> AsyncIterator[Infra]:
    nats = EmbeddedNats(tmp_path / "store", port=free_port())
    nats.start(log_file=tmp_path / "nats.log")
    try:
        handles = await open_infra(nats.url, "stored-audio-test", 1)
        try:
            yield handles
        finally:
            await handles.close()
    finally:
        nats.stop()


@pytest.mark.nats
async def test_load_pcm_reads_or_fails_for_good(infra: Infra) -> None:
    pcm = np.arange(-800, 800, dtype="<i2").tobytes()
    await infra.audio.put("job-a/audio.wav", wav_bytes(pcm))
    assert await load_pcm(infra, "job-a/audio.wav") == pcm
    assert await load_pcm(infra, "job-a/audio.wav", "clip") == pcm

    with pytest.raises(PermanentFailure) as missing:
        await load_pcm(infra, "job-b/audio.wav")
    assert missing.value.code == "audio_missing"
    assert missing.value.message == "normalised audio job-b/audio.wav is not stored"

    await infra.audio.put("job-c/clip-0.wav", wav_bytes(pcm, sample_rate=8000))
    with pytest.raises(PermanentFailure) as invalid:
        await load_pcm(infra, "job-c/clip-0.wav", "clip")
    assert invalid.value.code == "clip_invalid"
    assert invalid.value.message.startswith("clip job-c/clip-0.wav is unusable: expected 16 kHz mono")

    with pytest.raises(PermanentFailure) as clip_missing:
        await load_pcm(infra, "job-d/clip-0.wav", "clip")
    assert clip_missing.value.code == "clip_missing"

    await infra.audio.put("job-e/audio.wav", b"not a wav file")
    with pytest.raises(PermanentFailure) as not_wav:
        await load_pcm(infra, "job-e/audio.wav")
    assert not_wav.value.code == "audio_invalid"
    assert not_wav.value.message.startswith("stored audio is unusable: ")
