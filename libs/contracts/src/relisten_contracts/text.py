"""Words into text: languages written with and without spaces between words.

Whisper gives the words of Japanese, Chinese, Thai, ... without spaces around them; joining them with
spaces (``客 観 的``) is wrong text. Every place that turns words into text (the transcript, its
segments, subtitles) goes through :func:`join_words`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

WRITTEN_WITHOUT_SPACES: Final = frozenset({"ja", "zh", "yue", "th", "lo", "my", "km", "bo"})
"""Whisper's languages whose writing puts no space between words (scored by characters, too)."""


def written_without_spaces(language: str | None) -> bool:
    return language in WRITTEN_WITHOUT_SPACES


def join_words(words: Iterable[str], language: str | None = None) -> str:
    """The words as text: single-spaced (engines differ on leading spaces in word texts), or run
    together for a language written without spaces."""
    parts = [stripped for word in words if (stripped := word.strip())]
    return ("" if written_without_spaces(language) else " ").join(parts)
