"""The words of a verbose_json answer: top level or inside segments, blank words left out, malformed
ones refused, a missing probability left for the pass to decide."""

from __future__ import annotations

import pytest
from relisten_speech.errors import SpeechError
from relisten_speech.verbose_json import HeardWord, verbose_words


def test_top_level_words_win_over_segment_words() -> None:
    body = {
        "words": [
            {"word": " a", "start": 0, "end": 0.5, "probability": 0.25},
            {"word": " ", "start": 1, "end": 1},
        ],
        "segments": [{"words": [{"word": "ignored", "start": 0, "end": 1}]}],
    }
    assert verbose_words(body) == [HeardWord("a", 0.0, 0.5, 0.25)]


def test_segment_words_when_there_are_none_at_the_top() -> None:
    body = {"segments": [{"words": [{"word": "b", "start": 1, "end": 0.5}]}, "not a segment"]}
    assert verbose_words(body) == [HeardWord("b", 1.0, 0.5, None)]
    assert verbose_words({"text": "no words"}) == []


@pytest.mark.parametrize(
    "body",
    [
        {"words": 3},
        {"segments": 3},
        {"words": [{"start": 0, "end": 1}]},
        {"words": [{"word": "a", "start": True, "end": 1}]},
        {"words": [{"word": "a", "start": 0, "end": 1, "probability": "high"}]},
    ],
)
def test_malformed_answers_are_bad_responses(body: dict[str, object]) -> None:
    with pytest.raises(SpeechError) as failure:
        verbose_words(body)
    assert failure.value.code == "bad_response"
