"""The words of an OpenAI ``verbose_json`` transcription answer, read the same way for both passes.

Servers differ: OpenAI and speaches put ``words`` at the top level, others only inside each segment;
OpenAI's own API never sends a word probability. What a pass then does with the words (the first pass
clamps them to the audio and builds segments, the second keeps them relative to its clip) is its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from relisten_speech.errors import SpeechError


class HeardWord(NamedTuple):
    """One word of an answer: text without surrounding spaces, times as sent, probability if sent."""

    text: str
    start: float
    end: float
    probability: float | None


def json_number(value: Any, what: str, default: float | None = None) -> float:
    """A number from a server's JSON answer (``default`` when absent and one is given); anything else,
    booleans included, is ``bad_response``."""
    if value is None and default is not None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpeechError("bad_response", f"{what} is {value!r}, not a number")
    return float(value)


def verbose_words(body: dict[str, Any]) -> list[HeardWord]:
    """The answer's words in order: the top-level ``words``, else those inside its ``segments``; words
    that are only white space are left out, a malformed one is ``bad_response``."""
    raw: Any = body.get("words")
    if not raw:
        segments = body.get("segments") or []
        if not isinstance(segments, Sequence):
            raise SpeechError("bad_response", "segments is not a list")
        raw = [w for s in segments if isinstance(s, dict) for w in (s.get("words") or [])]
    if not isinstance(raw, Sequence):
        raise SpeechError("bad_response", "words is not a list")
    words: list[HeardWord] = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("word"), str):
            raise SpeechError("bad_response", f"malformed word {item!r}")
        text = item["word"].strip()
        if not text:
            continue
        probability = item.get("probability")
        words.append(
            HeardWord(
                text=text,
                start=json_number(item.get("start"), "word start"),
                end=json_number(item.get("end"), "word end"),
                probability=None if probability is None else json_number(probability, "word probability"),
            )
        )
    return words
