"""Live refinement's prompt context (pure): the text before a window, the turn's own first, then the
session's earlier turns', at most ``context_chars`` and in whole words."""

from __future__ import annotations

import msgspec
from relisten_clipper.domain import ClipPolicy, Window
from relisten_contracts import FirstPass, Word
from relisten_contracts.live import LiveRefineRequest
from relisten_corrector.live import LiveRefineResponder


def _request(words: list[str], previous: str) -> LiveRefineRequest:
    made = [Word(word=w, start=i * 0.5, end=i * 0.5 + 0.4, probability=0.9) for i, w in enumerate(words)]
    first = FirstPass(language="en", duration_s=5.0, words=made, segments=[], engine="t", seconds=0.1)
    return LiveRefineRequest(session_id="s", turn_id="t", audio=b"", first_pass=first, previous_text=previous)


def _window(word_first: int) -> Window:
    return Window(
        start_s=word_first * 0.5,
        end_s=word_first * 0.5 + 1,
        flagged=(word_first,),
        trigger_confidence=0.2,
        word_first=word_first,
        word_last=word_first + 1,
    )


def test_the_session_text_fills_in_before_the_turn() -> None:
    request = _request(["the", "apostle", "of"], "Mister Quilter is")
    policy = ClipPolicy(context_chars=200)
    assert LiveRefineResponder._context(request, _window(2), policy) == "Mister Quilter is the apostle"
    assert LiveRefineResponder._context(request, _window(0), policy) == "Mister Quilter is"
    # whole words only, within the budget
    tight = ClipPolicy(context_chars=16)
    assert LiveRefineResponder._context(request, _window(0), tight) == "Quilter is"
    assert LiveRefineResponder._context(_request(["a"], ""), _window(0), policy) == ""


def test_a_turn_spends_what_the_session_has_left() -> None:
    policy = ClipPolicy(max_redecode_fraction=0.2)
    alone = _request(["a"], "")
    assert LiveRefineResponder._budget_s(policy, alone) is None  # the turn's own fifth
    shared = msgspec.structs.replace(alone, session_audio_s=60.0, session_redecoded_s=4.0)
    assert LiveRefineResponder._budget_s(policy, shared) == 8.0
    spent = msgspec.structs.replace(alone, session_audio_s=60.0, session_redecoded_s=15.0)
    assert LiveRefineResponder._budget_s(policy, spent) == 0.0
