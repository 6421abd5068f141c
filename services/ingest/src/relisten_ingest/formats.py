"""Transcript renderings: plain text, SubRip (SRT) and WebVTT. Pure functions of a ``Transcript``.

Subtitle cues follow the usual broadcast guidance: at most two lines of 42 characters (84 in all)
and at most 7 seconds on screen. Long segments are split between words, preferably after a
sentence end, then after a clause mark, and only then wherever the limit falls. Segment starts and
long pauses always begin a new cue. Cues come out ordered and never overlap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from relisten_contracts import Transcript, join_words, written_without_spaces

MAX_CUE_SECONDS: Final = 7.0
LINE_CHARS: Final = 42
MAX_LINES: Final = 2
PAUSE_BREAK_S: Final = 2.0
MIN_CUE_SECONDS: Final = 0.8
"""A cue shorter than this is held on screen longer, up to the start of the next one."""

_SENTENCE_END: Final = (".", "!", "?", "…", '."', '?"', '!"', ".'", "?'", "!'")
_CLAUSE_END: Final = (",", ";", ":", "—", "–")
_ATTACHES_LEFT: Final = frozenset(".,!?;:%)]}…»\"'")


@dataclass(frozen=True)
class Cue:
    """One subtitle: times in seconds, text with at most one line break."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class _Token:
    text: str
    start: float
    end: float
    opens_segment: bool = False


def _tokens_from_words(transcript: Transcript) -> list[_Token]:
    segment_starts = {seg.first_word for seg in transcript.segments}
    tokens: list[_Token] = []
    for index, word in enumerate(transcript.words):
        text = " ".join(word.word.split())
        if not text:
            continue
        start, end = max(word.start, 0.0), max(word.end, word.start, 0.0)
        if tokens and all(ch in _ATTACHES_LEFT for ch in text) and index not in segment_starts:
            last = tokens[-1]
            tokens[-1] = _Token(last.text + text, last.start, max(last.end, end), last.opens_segment)
            continue
        tokens.append(_Token(text, start, end, opens_segment=index in segment_starts))
    return tokens


def _tokens_from_segments(transcript: Transcript) -> list[_Token]:
    """Without word times, spread each segment's time over its words in proportion to their length."""
    tokens: list[_Token] = []
    for seg in sorted(transcript.segments, key=lambda s: s.start):
        words = seg.text.split()
        if not words:
            continue
        start, end = max(seg.start, 0.0), max(seg.end, seg.start, 0.0)
        total = sum(len(w) + 1 for w in words)
        at = start
        for i, word in enumerate(words):
            share = (end - start) * (len(word) + 1) / total
            tokens.append(_Token(word, at, at + share, opens_segment=i == 0))
            at += share
    return tokens


def _text(tokens: list[_Token], joiner: str = " ") -> str:
    return joiner.join(t.text for t in tokens)


def _too_long(tokens: list[_Token], max_chars: int, max_seconds: float, joiner: str) -> bool:
    return len(_text(tokens, joiner)) > max_chars or tokens[-1].end - tokens[0].start > max_seconds


def _break_point(tokens: list[_Token], joiner: str) -> int:
    """How many of ``tokens`` go into the cue being closed.

    The latest sentence end, else the latest clause mark, that leaves at least a third of the text
    in the closed cue; otherwise all of them.
    """
    total = len(_text(tokens, joiner))
    for marks in (_SENTENCE_END, _CLAUSE_END):
        for count in range(len(tokens) - 1, 0, -1):
            if tokens[count - 1].text.endswith(marks) and len(_text(tokens[:count], joiner)) * 3 >= total:
                return count
    return len(tokens)


def _group(tokens: list[_Token], max_chars: int, max_seconds: float, joiner: str) -> list[list[_Token]]:
    groups: list[list[_Token]] = []
    current: list[_Token] = []
    for token in tokens:
        hard_break = bool(current) and (token.opens_segment or token.start - current[-1].end >= PAUSE_BREAK_S)
        if hard_break:
            groups.append(current)
            current = []
        elif current and _too_long([*current, token], max_chars, max_seconds, joiner):
            keep = _break_point(current, joiner)
            groups.append(current[:keep])
            current = current[keep:]
            if current and _too_long([*current, token], max_chars, max_seconds, joiner):
                groups.append(current)
                current = []
        current.append(token)
    if current:
        groups.append(current)
    return groups


def wrap_lines(text: str, line_chars: int = LINE_CHARS, *, anywhere: bool = False) -> str:
    """Break ``text`` into at most two lines at the space that balances them best."""
    if len(text) <= line_chars:
        return text
    if anywhere:  # a language written without spaces breaks between any two characters
        middle = (len(text) + 1) // 2
        return f"{text[:middle]}\n{text[middle:]}"
    spaces = [i for i, ch in enumerate(text) if ch == " "]
    if not spaces:
        return text
    best = min(spaces, key=lambda i: (max(i, len(text) - i - 1), abs(len(text) / 2 - i)))
    return f"{text[:best]}\n{text[best + 1 :]}"


def build_cues(
    transcript: Transcript,
    *,
    max_seconds: float = MAX_CUE_SECONDS,
    line_chars: int = LINE_CHARS,
    max_lines: int = MAX_LINES,
) -> list[Cue]:
    """Subtitle cues of a transcript, in order and without overlaps.

    Cue times are whole milliseconds so that the rendered timestamps are exact.
    """
    tokens = _tokens_from_words(transcript) if transcript.words else _tokens_from_segments(transcript)
    tokens.sort(key=lambda t: t.start)
    joiner = "" if written_without_spaces(transcript.language) else " "
    groups = _group(tokens, line_chars * max_lines, max_seconds, joiner)
    spans = [(round(g[0].start * 1000), round(max(t.end for t in g) * 1000)) for g in groups]

    cues: list[Cue] = []
    previous_end = 0
    min_ms = round(MIN_CUE_SECONDS * 1000)
    for i, (group, (start, end)) in enumerate(zip(groups, spans, strict=True)):
        start = max(start, previous_end)
        end = max(end, start + min_ms)
        if i + 1 < len(spans):
            end = min(end, spans[i + 1][0])
        end = max(end, start + 1)
        cues.append(
            Cue(start / 1000, end / 1000, wrap_lines(_text(group, joiner), line_chars, anywhere=not joiner))
        )
        previous_end = end
    return cues


def _timestamp(seconds: float, separator: str) -> str:
    ms = max(round(seconds * 1000), 0)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{ms:03d}"


def srt_timestamp(seconds: float) -> str:
    """``HH:MM:SS,mmm``."""
    return _timestamp(seconds, ",")


def vtt_timestamp(seconds: float) -> str:
    """``HH:MM:SS.mmm``."""
    return _timestamp(seconds, ".")


def to_text(transcript: Transcript) -> str:
    """The transcript as plain text, one line, ending with a newline (empty for silence)."""
    text = " ".join(transcript.text.split())
    if not text:
        text = join_words((t.text for t in _tokens_from_words(transcript)), transcript.language)
    return f"{text}\n" if text else ""


def to_srt(transcript: Transcript) -> str:
    """SubRip: numbered cues, ``HH:MM:SS,mmm --> HH:MM:SS,mmm``, a blank line after each."""
    blocks = [
        f"{n}\n{srt_timestamp(cue.start)} --> {srt_timestamp(cue.end)}\n{cue.text}\n"
        for n, cue in enumerate(build_cues(transcript), start=1)
    ]
    return "".join(f"{block}\n" for block in blocks)


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(transcript: Transcript) -> str:
    """WebVTT: the ``WEBVTT`` header, then ``HH:MM:SS.mmm --> HH:MM:SS.mmm`` cues."""
    blocks = [
        f"{vtt_timestamp(cue.start)} --> {vtt_timestamp(cue.end)}\n{_vtt_escape(cue.text)}\n"
        for cue in build_cues(transcript)
    ]
    return "WEBVTT\n\n" + "".join(f"{block}\n" for block in blocks)
