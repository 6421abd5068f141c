"""The live first pass: the cut of a decode with context down to the turn's own words, the model a
session's language picks, the order requests are answered in, and the partial lane (real tiny.en)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
from nats.aio.msg import Msg
from relisten_asr.engines import FasterWhisperEngine, ProgressCallback, Task
from relisten_asr.language import LanguageRouter
from relisten_asr.live import LiveFirstPassResponder, turn_only
from relisten_asr.settings import AsrSettings
from relisten_contracts import FirstPass, Segment, Word
from relisten_contracts.live import LiveFirstPassReply, LiveFirstPassRequest, encode_live

SPEECH = str(
    Path(__file__).resolve().parents[3]
    / "tests"
    / "fixtures"
    / "audio"
    / "ls-test-other-1688-142285-0000.flac"
)


def _word(text: str, start: float, end: float) -> Word:
    return Word(word=text, start=start, end=end, probability=0.9)


def _segment(start: float, end: float, first: int, last: int) -> Segment:
    return Segment(
        start=start,
        end=end,
        text="",
        avg_logprob=-0.3,
        compression_ratio=1.3,
        no_speech_prob=0.0,
        first_word=first,
        last_word=last,
    )


def test_the_turn_keeps_the_words_after_the_context_on_its_own_clock() -> None:
    words = [
        _word("before", 1.0, 1.5),
        _word("edge", 2.8, 3.4),
        _word("inside", 3.5, 4.0),
        _word("end", 4.2, 4.6),
    ]
    # the context is 3 s: "edge" has its midpoint (3.1) in the turn, "before" does not
    first = FirstPass(
        language="en",
        duration_s=5.0,
        words=words,
        segments=[_segment(0.5, 1.6, 0, 1), _segment(2.7, 4.7, 1, 4)],
        engine="tiny",
        seconds=0.4,
    )
    turn = turn_only(first, 3.0)
    assert [w.word for w in turn.words] == ["edge", "inside", "end"]
    assert [(round(w.start, 6), round(w.end, 6)) for w in turn.words] == [(0.0, 0.4), (0.5, 1.0), (1.2, 1.6)]
    assert turn.duration_s == 2.0
    assert [(s.first_word, s.last_word) for s in turn.segments] == [(0, 3)]
    assert turn.segments[0].start == 0.0


def test_a_segment_across_the_edge_keeps_only_its_turn_words() -> None:
    words = [_word("a", 1.0, 1.4), _word("b", 2.0, 2.4), _word("c", 3.2, 3.6)]
    first = FirstPass(
        language="en",
        duration_s=4.0,
        words=words,
        segments=[_segment(0.9, 3.7, 0, 3)],
        engine="tiny",
        seconds=0.4,
    )
    turn = turn_only(first, 3.0)
    assert [w.word for w in turn.words] == ["c"]
    assert [(s.first_word, s.last_word) for s in turn.segments] == [(0, 1)]


def test_no_context_changes_nothing() -> None:
    first = FirstPass(
        language="en", duration_s=1.0, words=[_word("x", 0.1, 0.3)], segments=[], engine="t", seconds=0.1
    )
    assert turn_only(first, 0.0) is first
    silent = turn_only(first, 2.0)
    assert silent.words == [] and silent.duration_s == 0.0


def test_a_session_language_picks_the_model_a_job_in_it_would_get() -> None:
    settings = AsrSettings()
    engine = FasterWhisperEngine(settings)  # loaded lazily: nothing is loaded here
    router = LanguageRouter(settings, engine)
    responder = LiveFirstPassResponder(engine, None, router)
    assert responder._engine_for(None) is engine
    assert responder._engine_for("en") is engine
    assert router.multilingual is not None and responder._engine_for("de") is router.multilingual
    assert responder._engine_for("zz") is None
    assert LiveFirstPassResponder(engine)._engine_for("de") is engine  # no router: the one engine


def _message(turn: str, final: bool) -> Msg:
    """A live first-pass request as the responder's subscription hands it over."""
    request = LiveFirstPassRequest(session_id="s", turn_id=turn, audio=b"", final=final)
    return Msg(_client=None, data=encode_live(request))  # type: ignore[arg-type]


async def test_final_passes_go_before_waiting_partial_ones() -> None:
    order: list[str] = []
    gate = asyncio.Event()
    started = asyncio.Event()
    all_answered = asyncio.Event()

    class Recorded(LiveFirstPassResponder):
        async def answer(self, request: LiveFirstPassRequest) -> LiveFirstPassReply:
            order.append(request.turn_id)
            started.set()
            if len(order) == 4:
                all_answered.set()
            if request.turn_id == "p1":
                await gate.wait()  # the first partial is being decoded while the others arrive
            return LiveFirstPassReply()

    responder = Recorded(FasterWhisperEngine(AsrSettings()))
    responder._worker = asyncio.create_task(responder._work(responder._waiting))
    responder._take(_message("p1", False))
    await started.wait()
    for turn, final in (("p2", False), ("p3", False), ("f1", True)):
        responder._take(_message(turn, final))
    gate.set()
    await all_answered.wait()
    await responder.aclose()
    assert order == ["p1", "f1", "p2", "p3"]
    # a message that does not decode is answered at once, not queued
    assert responder._take(Msg(_client=None, data=b"\xc1")) is None  # type: ignore[arg-type]
    assert responder._waiting.empty()


async def test_partials_take_the_cheap_pass_and_finals_the_files() -> None:
    calls: list[str] = []

    class Counted(FasterWhisperEngine):
        async def transcribe(
            self,
            audio: np.ndarray,
            *,
            language: str | None,
            prompt: str | None,
            on_progress: ProgressCallback | None = None,
            task: Task = "transcribe",
            mixed: bool = False,
        ) -> FirstPass:
            calls.append("full")
            return await super().transcribe(audio, language=language, prompt=prompt)

        async def transcribe_partial(
            self, audio: np.ndarray, *, language: str | None, prompt: str | None
        ) -> FirstPass:
            calls.append("partial")
            return await super().transcribe_partial(audio, language=language, prompt=prompt)

    responder = LiveFirstPassResponder(Counted(AsrSettings()))
    silence = bytes(3200)
    for final in (False, True):
        reply = await responder.answer(
            LiveFirstPassRequest(session_id="s", turn_id="t", audio=silence, final=final, language="en")
        )
        assert reply.error is None and reply.first_pass is not None
    assert calls == ["partial", "full"]


async def test_with_a_partial_lane_partials_are_answered_while_a_final_decodes() -> None:
    order: list[str] = []
    final_started = asyncio.Event()
    release_final = asyncio.Event()
    partial_answered = asyncio.Event()

    class Recorded(LiveFirstPassResponder):
        async def answer(self, request: LiveFirstPassRequest) -> LiveFirstPassReply:
            order.append(request.turn_id)
            if request.final:
                final_started.set()
                await release_final.wait()  # a long final pass
            else:
                partial_answered.set()
            return LiveFirstPassReply()

    responder = Recorded(FasterWhisperEngine(AsrSettings()), partials_apart=True)
    responder._worker = asyncio.create_task(responder._work(responder._waiting))
    responder._partial_worker = asyncio.create_task(responder._work(responder._partials))
    responder._take(_message("f1", True))
    await final_started.wait()
    responder._take(_message("p1", False))
    await asyncio.wait_for(partial_answered.wait(), timeout=10)  # not behind the final
    release_final.set()
    await responder.aclose()
    assert order == ["f1", "p1"]


async def test_the_partial_lane_decodes_while_the_main_model_is_busy() -> None:
    """Real tiny.en: with the main model held (a job's or a final pass's decode), a partial pass still
    runs on its own copy; without the lane it would queue behind."""
    from faster_whisper import decode_audio

    audio = np.asarray(decode_audio(SPEECH, sampling_rate=16_000), dtype=np.float32)[: 3 * 16_000]
    engine = FasterWhisperEngine(AsrSettings())
    await asyncio.to_thread(engine.load)
    async with engine._queue:  # the main model is busy for as long as this block runs
        first = await asyncio.wait_for(
            engine.transcribe_partial(audio, language="en", prompt=None), timeout=120
        )
    assert first.words, "the partial pass heard the speech"
    alone = FasterWhisperEngine(AsrSettings(live_partial_lane=False))
    async with alone._queue:
        waiting = asyncio.ensure_future(alone.transcribe_partial(audio, language="en", prompt=None))
        await asyncio.sleep(0.5)
        assert not waiting.done()  # no lane: it queues behind the main model
    assert (await waiting).words
