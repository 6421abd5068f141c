"""The cross-job batcher (relisten_corrector.batcher) in front of a model stand-in that records its
calls: requests meet while the model is busy, an announced job is waited for (boundedly), a lone one
never is, calls keep their bound and their prompt and language, each asker gets exactly its own
answers, and one asker's failure stays its own."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
import pytest
from relisten_corrector.backends import SecondPassAnswer
from relisten_corrector.batcher import CrossJobBatcher

WAIT_S = 30.0
"""A bound against hanging, not a speed assertion."""
FOREVER_S = 3600.0
"""A linger no test may ever sit through (it would hit WAIT_S)."""


def clip(tag: int, chunks: int = 1) -> np.ndarray:
    """A clip that says who it is; ``chunks`` is its size as the stand-in counts it."""
    return np.full(chunks, tag, dtype=np.float32)


class Model:
    """Answers each clip with its tag; calls can be held open (a busy model) or made to fail."""

    name = "stand-in"

    def __init__(self) -> None:
        self.calls: list[list[list[int]]] = []
        self.keys: list[tuple[str | None, str | None]] = []
        self.hold = asyncio.Event()
        self.hold.set()
        self.started = asyncio.Event()
        self.poison = -1
        self.delay_s = 0.0

    def chunk_count(self, clips: Sequence[np.ndarray]) -> int:
        return sum(len(c) for c in clips)

    async def transcribe(
        self, audio: np.ndarray, *, prompt: str | None, language: str | None
    ) -> SecondPassAnswer:
        return SecondPassAnswer(text=f"alone {int(audio[0])}", words=[])

    async def transcribe_together(
        self, requests: Sequence[Sequence[np.ndarray]], *, prompt: str | None, language: str | None
    ) -> list[list[SecondPassAnswer]]:
        tags = [[int(c[0]) for c in clips] for clips in requests]
        self.calls.append(tags)
        self.keys.append((prompt, language))
        self.started.set()
        await self.hold.wait()
        await asyncio.sleep(self.delay_s)
        if any(self.poison in request for request in tags):
            raise RuntimeError("this clip breaks the model")
        return [[SecondPassAnswer(text=str(tag), words=[]) for tag in request] for request in tags]

    async def transcribe_whole(
        self, clips: Sequence[np.ndarray], *, prompt: str | None, language: str | None
    ) -> tuple[list[SecondPassAnswer], float]:
        return [SecondPassAnswer(text=f"whole {int(c[0])}", words=[]) for c in clips], 0.0

    async def aclose(self) -> None:
        pass


def texts(answers: list[SecondPassAnswer]) -> list[str]:
    return [a.text for a in answers]


async def test_requests_arriving_while_the_model_is_busy_go_together_each_getting_its_own() -> None:
    model = Model()
    batcher = CrossJobBatcher(model, linger_s=FOREVER_S, max_chunks=8)
    model.hold.clear()
    first = asyncio.create_task(batcher.transcribe_many([clip(1)], prompt=None, language="en"))
    await asyncio.wait_for(model.started.wait(), WAIT_S)
    later = [
        asyncio.create_task(
            batcher.transcribe_many([clip(10 * n), clip(10 * n + 1)], prompt=None, language="en")
        )
        for n in (2, 3, 4)
    ]
    await asyncio.sleep(0)  # let them queue behind the busy model
    model.hold.set()
    answers = await asyncio.wait_for(asyncio.gather(first, *later), WAIT_S)
    assert [texts(a) for a in answers] == [["1"], ["20", "21"], ["30", "31"], ["40", "41"]]
    assert model.calls == [[[1]], [[20, 21], [30, 31], [40, 41]]]
    assert batcher.calls == 2


async def test_a_lone_request_never_lingers() -> None:
    model = Model()
    batcher = CrossJobBatcher(model, linger_s=FOREVER_S, max_chunks=8)
    answer = await asyncio.wait_for(batcher.transcribe_many([clip(7)], prompt=None, language=None), WAIT_S)
    assert texts(answer) == ["7"]
    # An announced job that asks is not waited for by its own call either.
    async with batcher.requester() as job:
        answer = await asyncio.wait_for(job.transcribe_many([clip(8)], prompt=None, language=None), WAIT_S)
    assert texts(answer) == ["8"]
    assert model.calls == [[[7]], [[8]]]


async def test_a_free_model_waits_for_an_announced_job_that_has_not_asked_yet() -> None:
    model = Model()
    batcher = CrossJobBatcher(model, linger_s=FOREVER_S, max_chunks=8)
    async with batcher.requester() as first, batcher.requester() as second:
        asking = asyncio.create_task(first.transcribe_many([clip(1)], prompt="g", language="en"))
        await asyncio.sleep(0)
        assert not model.calls  # waiting for the second job, still reading its clips
        answer_two = await asyncio.wait_for(
            second.transcribe_many([clip(2), clip(3)], prompt="g", language="en"), WAIT_S
        )
        answer_one = await asyncio.wait_for(asking, WAIT_S)
    assert texts(answer_one) == ["1"] and texts(answer_two) == ["2", "3"]
    assert model.calls == [[[1], [2, 3]]]


async def test_an_announced_job_that_leaves_without_asking_releases_the_wait() -> None:
    model = Model()
    batcher = CrossJobBatcher(model, linger_s=FOREVER_S, max_chunks=8)
    async with batcher.requester() as job:
        asking = asyncio.create_task(job.transcribe_many([clip(1)], prompt=None, language=None))
        async with batcher.requester():
            await asyncio.sleep(0)
            assert not model.calls
        # The other job ended (everything already stored): no more reason to wait.
        assert texts(await asyncio.wait_for(asking, WAIT_S)) == ["1"]


async def test_the_linger_is_bounded() -> None:
    model = Model()
    batcher = CrossJobBatcher(model, linger_s=0.05, max_chunks=8)
    async with batcher.requester(), batcher.requester() as job:
        # The other job never asks: the call goes after the linger.
        answer = await asyncio.wait_for(job.transcribe_many([clip(5)], prompt=None, language=None), WAIT_S)
    assert texts(answer) == ["5"]


async def test_calls_keep_their_bound_and_a_full_one_does_not_wait() -> None:
    model = Model()
    batcher = CrossJobBatcher(model, linger_s=FOREVER_S, max_chunks=4)
    model.hold.clear()
    busy = asyncio.create_task(batcher.transcribe_many([clip(1)], prompt=None, language=None))
    await asyncio.wait_for(model.started.wait(), WAIT_S)
    sizes = {2: 3, 3: 2, 4: 1, 5: 6, 6: 1}
    asked = [
        asyncio.create_task(batcher.transcribe_many([clip(tag, n)], prompt=None, language=None))
        for tag, n in sizes.items()
    ]
    await asyncio.sleep(0)
    model.hold.set()
    answers = await asyncio.wait_for(asyncio.gather(busy, *asked), WAIT_S)
    assert [texts(a) for a in answers] == [["1"], ["2"], ["3"], ["4"], ["5"], ["6"]]
    # Oldest first, then what fits: 3 + 1; then 2 + 1; a request larger than the bound goes alone.
    assert model.calls[1:] == [[[2], [4]], [[3], [6]], [[5]]]
    # A call already full does not wait for an announced job.
    async with batcher.requester():
        answer = await asyncio.wait_for(
            batcher.transcribe_many([clip(7, 4)], prompt=None, language=None), WAIT_S
        )
    assert texts(answer) == ["7"]


async def test_calls_never_mix_prompts_or_languages() -> None:
    model = Model()
    batcher = CrossJobBatcher(model, linger_s=FOREVER_S, max_chunks=8)
    model.hold.clear()
    busy = asyncio.create_task(batcher.transcribe_many([clip(1)], prompt=None, language="en"))
    await asyncio.wait_for(model.started.wait(), WAIT_S)
    asked = [
        asyncio.create_task(batcher.transcribe_many([clip(tag)], prompt=prompt, language=language))
        for tag, prompt, language in [
            (2, None, "en"),
            (3, None, "de"),
            (4, "Thornton", "en"),
            (5, None, "en"),
        ]
    ]
    await asyncio.sleep(0)
    model.hold.set()
    answers = await asyncio.wait_for(asyncio.gather(busy, *asked), WAIT_S)
    assert [texts(a) for a in answers] == [["1"], ["2"], ["3"], ["4"], ["5"]]
    assert model.calls[1:] == [[[2], [5]], [[3]], [[4]]]
    assert model.keys[1:] == [(None, "en"), (None, "de"), ("Thornton", "en")]


async def test_a_failing_shared_call_is_retried_alone_and_only_the_culprit_fails() -> None:
    model = Model()
    model.poison = 66
    batcher = CrossJobBatcher(model, linger_s=FOREVER_S, max_chunks=8)
    model.hold.clear()
    busy = asyncio.create_task(batcher.transcribe_many([clip(1)], prompt=None, language=None))
    await asyncio.wait_for(model.started.wait(), WAIT_S)
    good = asyncio.create_task(batcher.transcribe_many([clip(2)], prompt=None, language=None))
    bad = asyncio.create_task(batcher.transcribe_many([clip(66)], prompt=None, language=None))
    await asyncio.sleep(0)
    model.hold.set()
    assert texts(await asyncio.wait_for(busy, WAIT_S)) == ["1"]
    assert texts(await asyncio.wait_for(good, WAIT_S)) == ["2"]
    with pytest.raises(RuntimeError, match="breaks"):
        await asyncio.wait_for(bad, WAIT_S)
    assert model.calls[1:] == [[[2], [66]], [[2]], [[66]]]


async def test_a_cancelled_asker_gives_up_its_place() -> None:
    model = Model()
    batcher = CrossJobBatcher(model, linger_s=FOREVER_S, max_chunks=8)
    model.hold.clear()
    busy = asyncio.create_task(batcher.transcribe_many([clip(1)], prompt=None, language=None))
    await asyncio.wait_for(model.started.wait(), WAIT_S)
    gone = asyncio.create_task(batcher.transcribe_many([clip(2)], prompt=None, language=None))
    stays = asyncio.create_task(batcher.transcribe_many([clip(3)], prompt=None, language=None))
    await asyncio.sleep(0)
    gone.cancel()
    model.hold.set()
    assert texts(await asyncio.wait_for(stays, WAIT_S)) == ["3"]
    await asyncio.wait_for(busy, WAIT_S)
    assert model.calls == [[[1]], [[3]]]


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        CrossJobBatcher(Model(), linger_s=-1.0, max_chunks=8)
    with pytest.raises(ValueError):
        CrossJobBatcher(Model(), linger_s=0.1, max_chunks=0)


async def test_each_asker_is_given_its_share_of_the_call_s_model_time_by_chunks() -> None:
    model = Model()
    model.delay_s = 0.05  # every call takes a little time to share
    batcher = CrossJobBatcher(model, linger_s=FOREVER_S, max_chunks=8)
    model.hold.clear()
    busy = asyncio.create_task(batcher.transcribe_many([clip(1)], prompt=None, language=None))
    await asyncio.wait_for(model.started.wait(), WAIT_S)
    async with batcher.requester() as small, batcher.requester() as large:
        asked = [
            asyncio.create_task(small.transcribe_many_timed([clip(2, 1)], prompt=None, language=None)),
            asyncio.create_task(large.transcribe_many_timed([clip(3, 3)], prompt=None, language=None)),
        ]
        await asyncio.sleep(0)
        model.hold.set()
        await asyncio.wait_for(busy, WAIT_S)
        (small_answers, small_s), (large_answers, large_s) = await asyncio.wait_for(
            asyncio.gather(*asked), WAIT_S
        )
    assert texts(small_answers) == ["2"] and texts(large_answers) == ["3"]
    assert model.calls[1:] == [[[2], [3]]]
    # Not the time spent waiting behind the first call: a quarter and three quarters of their own.
    assert small_s > 0 and large_s == pytest.approx(3 * small_s)
