"""The live request/reply subjects on a real nats-server, answered by the asr's and the corrector's
live responders with the real bundled models (tiny.en, base), as ingest asks them."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from itertools import pairwise
from pathlib import Path

import nats
import numpy as np
import pytest
import pytest_asyncio
from nats.aio.client import Client as NATS
from relisten_asr.engines import FasterWhisperEngine
from relisten_asr.live import LiveFirstPassResponder
from relisten_asr.settings import AsrSettings
from relisten_contracts.live import (
    LIVE_FIRST_PASS_SUBJECT,
    LIVE_REFINE_SUBJECT,
    LiveFirstPassReply,
    LiveFirstPassRequest,
    LiveRefineReply,
    LiveRefineRequest,
    decode_live,
    encode_live,
)
from relisten_corrector.backends import FasterWhisperBackend
from relisten_corrector.live import LiveRefineResponder
from relisten_corrector.settings import CorrectorSettings

from relisten.dataset import decode, word_error_rate

pytestmark = [pytest.mark.nats, pytest.mark.asyncio(loop_scope="module")]

IRON = Path(__file__).resolve().parents[1] / "fixtures" / "audio" / "ls-test-other-1688-142285-0000.flac"
IRON_TEXT = (
    "there's iron they say in all our blood and a grain or two perhaps is good but his he makes me "
    "harshly feel has got a little too much of steel anon"
)
TIMEOUT_S = 300.0
BACKEND = FasterWhisperBackend(CorrectorSettings())


@pytest.fixture(scope="module")
def iron_pcm() -> bytes:
    audio = decode(IRON)
    pcm: bytes = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    return pcm


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def nc(nats_url: str) -> AsyncIterator[NATS]:
    client = await nats.connect(nats_url)
    asr = LiveFirstPassResponder(FasterWhisperEngine(AsrSettings()))
    corrector = LiveRefineResponder(BACKEND, pack=True)  # as the corrector service runs it
    await asr.subscribe(client)
    await corrector.subscribe(client)
    try:
        yield client
    finally:
        await client.drain()
        await asr.aclose()


async def first_pass(nc: NATS, audio: bytes) -> LiveFirstPassReply:
    request = LiveFirstPassRequest(session_id="s", turn_id="t", audio=audio, language="en", final=True)
    answer = await nc.request(LIVE_FIRST_PASS_SUBJECT, encode_live(request), timeout=TIMEOUT_S)
    return decode_live(answer.data, LiveFirstPassReply)


async def test_first_pass_and_refinement_of_a_turn(nc: NATS, iron_pcm: bytes) -> None:
    reply = await first_pass(nc, iron_pcm)
    assert reply.error is None and reply.first_pass is not None
    first = reply.first_pass
    duration = len(iron_pcm) / 2 / 16000
    assert first.duration_s == pytest.approx(duration)
    assert word_error_rate(IRON_TEXT, " ".join(w.word for w in first.words)) < 0.3

    request = LiveRefineRequest(session_id="s", turn_id="t", audio=iron_pcm, first_pass=first)
    answer = await nc.request(LIVE_REFINE_SUBJECT, encode_live(request), timeout=TIMEOUT_S)
    refined = decode_live(answer.data, LiveRefineReply)
    assert refined.error is None
    # test-other speech: tiny.en is unsure somewhere, so something is re-listened to and decided
    assert refined.words_flagged > 0 and refined.corrections and refined.audio_redecoded_seconds > 0
    assert refined.backend.startswith("faster-whisper")
    for correction in refined.corrections:
        assert 0 <= correction.start < correction.end <= duration + 1e-6
        assert correction.status in {"accepted", "rejected", "unresolved"}
    for before, after in pairwise(refined.words):
        assert before.start <= after.start
    assert all(0 <= w.start <= w.end <= duration + 1e-6 for w in refined.words)
    text = " ".join(w.word for w in refined.words)
    assert word_error_rate(IRON_TEXT, text) < 0.3, text
    # words the second pass did not replace are the first pass's own
    firsts = {(w.word, w.start) for w in first.words}
    assert all((w.word, w.start) in firsts for w in refined.words if w.source == "first")


async def test_refinement_window_by_window_with_the_text_before(nc: NATS, iron_pcm: bytes) -> None:
    reply = await first_pass(nc, iron_pcm)
    assert reply.first_pass is not None
    request = LiveRefineRequest(
        session_id="s", turn_id="t", audio=iron_pcm, first_pass=reply.first_pass, previous_text="Anon, anon."
    )
    refined = await LiveRefineResponder(BACKEND, pack=False).answer(request)
    assert refined.error is None and refined.corrections and refined.words_flagged > 0
    assert word_error_rate(IRON_TEXT, " ".join(w.word for w in refined.words)) < 0.3


async def test_a_turn_decoded_with_the_audio_before_it(nc: NATS, iron_pcm: bytes) -> None:
    context_s = 6.0
    split = int(context_s * 16000) * 2
    request = LiveFirstPassRequest(
        session_id="s", turn_id="t", audio=iron_pcm, context_s=context_s, language="en", final=True
    )
    answer = await nc.request(LIVE_FIRST_PASS_SUBJECT, encode_live(request), timeout=TIMEOUT_S)
    reply = decode_live(answer.data, LiveFirstPassReply)
    assert reply.error is None and reply.first_pass is not None
    turn = reply.first_pass
    assert turn.duration_s == pytest.approx((len(iron_pcm) - split) / 2 / 16000)
    assert all(0 <= w.start <= w.end <= turn.duration_s + 1e-6 for w in turn.words)
    whole = await first_pass(nc, iron_pcm)
    assert whole.first_pass is not None
    # the turn's words are the whole decode's words after the context
    after = [w.word for w in whole.first_pass.words if (w.start + w.end) / 2 >= context_s]
    assert word_error_rate(" ".join(after), " ".join(w.word for w in turn.words)) < 0.2


async def test_bad_requests_get_an_error_code(nc: NATS) -> None:
    answer = await nc.request(LIVE_FIRST_PASS_SUBJECT, b"not msgpack at all", timeout=TIMEOUT_S)
    assert decode_live(answer.data, LiveFirstPassReply).error.code == "bad_request"  # type: ignore[union-attr]
    reply = await first_pass(nc, b"\x00\x01\x02")
    assert reply.error is not None and reply.error.code == "bad_audio"
    answer = await nc.request(LIVE_REFINE_SUBJECT, b"\x93", timeout=TIMEOUT_S)
    assert decode_live(answer.data, LiveRefineReply).error.code == "bad_request"  # type: ignore[union-attr]
    # a request whose asker has given up is not decoded
    late = LiveFirstPassRequest(session_id="s", turn_id="t", audio=bytes(32000), expires_at=time.time() - 1)
    answer = await nc.request(LIVE_FIRST_PASS_SUBJECT, encode_live(late), timeout=TIMEOUT_S)
    assert decode_live(answer.data, LiveFirstPassReply).error.code == "expired"  # type: ignore[union-attr]
    # two seconds of silence: no words, and nothing to refine
    silence = await first_pass(nc, bytes(64000))
    assert silence.error is None and silence.first_pass is not None and silence.first_pass.words == []
    request = LiveRefineRequest(
        session_id="s", turn_id="t", audio=bytes(64000), first_pass=silence.first_pass
    )
    answer = await nc.request(LIVE_REFINE_SUBJECT, encode_live(request), timeout=TIMEOUT_S)
    empty = decode_live(answer.data, LiveRefineReply)
    assert (empty.error, empty.words, empty.corrections, empty.words_flagged) == (None, [], [], 0)
