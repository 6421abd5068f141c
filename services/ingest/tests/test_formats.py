"""Unit tests of the transcript renderings: text, SRT, WebVTT and the cue rules behind them."""

from __future__ import annotations

import re

import msgspec
import pytest
from relisten_contracts import Transcript, TranscriptSegment, TranscriptStats, TranscriptWord
from relisten_ingest.formats import (
    LINE_CHARS,
    MAX_CUE_SECONDS,
    Cue,
    build_cues,
    srt_timestamp,
    to_srt,
    to_text,
    to_vtt,
    vtt_timestamp,
    wrap_lines,
)

STATS = TranscriptStats(
    first_pass_seconds=1.0,
    second_pass_seconds=0.0,
    audio_redecoded_seconds=0.0,
    words_flagged=0,
    corrections_accepted=0,
    corrections_rejected=0,
)


def transcript(
    words: list[tuple[str, float, float]], segment_starts: list[int] | None = None, text: str | None = None
) -> Transcript:
    """Words as (text, start, end); segments begin at the given word indices (default: one segment)."""
    items = [TranscriptWord(word=w, start=s, end=e, probability=0.9) for w, s, e in words]
    starts = segment_starts if segment_starts is not None else ([0] if words else [])
    segments = []
    for n, first in enumerate(starts):
        last = starts[n + 1] if n + 1 < len(starts) else len(items)
        segments.append(
            TranscriptSegment(
                id=n,
                start=items[first].start,
                end=items[last - 1].end,
                text="".join(w.word for w in items[first:last]).strip(),
                first_word=first,
                last_word=last,
            )
        )
    return Transcript(
        job_id="j",
        text=text if text is not None else "".join(w.word for w in items).strip(),
        language="en",
        duration_s=max((w.end for w in items), default=0.0),
        words=items,
        segments=segments,
        corrections=[],
        stats=STATS,
    )


def evenly(text: str, start: float = 0.0, step: float = 0.4) -> list[tuple[str, float, float]]:
    """Whisper-style words (leading spaces), one every ``step`` seconds."""
    return [(f" {w}", start + i * step, start + i * step + step * 0.8) for i, w in enumerate(text.split())]


LONG = (
    "Mister Quilter is the apostle of the middle classes, and we are glad to welcome his gospel. "
    "Nor is Mister Quilter's manner less interesting than his matter. He tells us that at this "
    "festive season of the year, with Christmas and roast beef looming before us, similes drawn "
    "from eating and its results occur most readily to the mind."
)


def assert_sane(cues: list[Cue]) -> None:
    previous_end = 0.0
    for cue in cues:
        assert cue.start >= previous_end, "cues overlap or are out of order"
        assert cue.end > cue.start
        lines = cue.text.split("\n")
        assert 1 <= len(lines) <= 2
        assert all(line.strip() == line and line for line in lines)
        previous_end = cue.end


@pytest.mark.parametrize(
    ("seconds", "srt", "vtt"),
    [
        (0.0, "00:00:00,000", "00:00:00.000"),
        (1.5, "00:00:01,500", "00:00:01.500"),
        (59.9996, "00:01:00,000", "00:01:00.000"),
        (3723.042, "01:02:03,042", "01:02:03.042"),
        (36000.0, "10:00:00,000", "10:00:00.000"),
        (-0.2, "00:00:00,000", "00:00:00.000"),
    ],
)
def test_timestamps(seconds: float, srt: str, vtt: str) -> None:
    assert srt_timestamp(seconds) == srt
    assert vtt_timestamp(seconds) == vtt


def test_long_segment_is_split_within_limits() -> None:
    t = transcript(evenly(LONG))
    cues = build_cues(t)
    assert len(cues) > 3
    assert_sane(cues)
    for cue in cues:
        assert len(cue.text.replace("\n", " ")) <= 2 * LINE_CHARS
        assert all(len(line) <= LINE_CHARS for line in cue.text.split("\n"))
        assert cue.end - cue.start <= MAX_CUE_SECONDS + 1e-9
    # Every word appears once, in order.
    assert " ".join(c.text.replace("\n", " ") for c in cues) == LONG


def test_split_prefers_punctuation() -> None:
    cues = build_cues(transcript(evenly(LONG)))
    ends = [c.text.replace("\n", " ") for c in cues]
    assert ends[0].endswith(",") or ends[0].endswith(".")
    assert sum(1 for text in ends if text[-1] in ".,") >= len(ends) - 2


def test_long_duration_is_split_even_when_short_in_text() -> None:
    words = [(f" w{i}", i * 2.0, i * 2.0 + 1.5) for i in range(10)]  # 20 s, 39 characters
    cues = build_cues(transcript(words))
    assert len(cues) >= 3
    assert all(c.end - c.start <= MAX_CUE_SECONDS for c in cues)
    assert_sane(cues)


def test_segment_starts_and_long_pauses_start_new_cues() -> None:
    words = [*evenly("first part here", 0.0), *evenly("second part", 1.5), *evenly("after a pause", 10.0)]
    cues = build_cues(transcript(words, segment_starts=[0, 3]))
    assert [c.text for c in cues] == ["first part here", "second part", "after a pause"]


def test_punctuation_tokens_attach_to_the_previous_word() -> None:
    words = [(" Hello", 0.0, 0.5), (",", 0.5, 0.5), (" world", 0.6, 1.0), (".", 1.0, 1.0)]
    cues = build_cues(transcript(words))
    assert [c.text for c in cues] == ["Hello, world."]


def test_overlapping_and_zero_length_words_give_ordered_cues() -> None:
    words = [(" a", 1.0, 1.0), (" b", 0.9, 0.95)]
    cues = build_cues(transcript(words, segment_starts=[0, 1]))
    assert_sane(cues)
    assert [c.text for c in cues] == ["b", "a"]


def test_short_cue_is_held_until_the_next_one() -> None:
    words = [(" Yes.", 0.0, 0.2), (" No.", 0.5, 0.7)]
    cues = build_cues(transcript(words, segment_starts=[0, 1]))
    assert cues[0].end == pytest.approx(0.5)
    assert cues[1].end == pytest.approx(0.5 + 0.8)


def test_wrap_lines_balances() -> None:
    text = "the quick brown fox jumps over the lazy dog and keeps on running"
    wrapped = wrap_lines(text)
    first, second = wrapped.split("\n")
    assert abs(len(first) - len(second)) <= 8
    assert wrap_lines("short line") == "short line"


def test_srt_document() -> None:
    words = [(" Hello", 0.0, 0.5), (" world.", 0.6, 1.2), (" Next", 3.5, 4.0), (" one", 4.1, 4.6)]
    srt = to_srt(transcript(words, segment_starts=[0, 2]))
    assert srt == (
        "1\n00:00:00,000 --> 00:00:01,200\nHello world.\n\n2\n00:00:03,500 --> 00:00:04,600\nNext one\n\n"
    )


def test_vtt_document_escapes_markup() -> None:
    words = [(" a", 0.0, 0.5), (" <b>&", 0.6, 1.2), (" -->", 1.3, 1.5)]
    vtt = to_vtt(transcript(words))
    assert vtt.startswith("WEBVTT\n\n")
    assert "00:00:00.000 --> 00:00:01.500\na &lt;b&gt;&amp; --&gt;\n" in vtt
    assert vtt.count("-->") == 1


def test_srt_blocks_parse_back() -> None:
    srt = to_srt(transcript(evenly(LONG)))
    blocks = srt.strip("\n").split("\n\n")
    pattern = re.compile(r"^(\d+)\n(\d\d:\d\d:\d\d,\d{3}) --> (\d\d:\d\d:\d\d,\d{3})\n(.+(\n.+)?)$")
    for n, block in enumerate(blocks, start=1):
        match = pattern.match(block)
        assert match, block
        assert int(match.group(1)) == n
        assert match.group(2) < match.group(3)


def test_empty_transcript() -> None:
    empty = transcript([], text="")
    assert to_text(empty) == ""
    assert to_srt(empty) == ""
    assert to_vtt(empty) == "WEBVTT\n\n"


def test_text() -> None:
    t = transcript(evenly("hello   there world"), text="  Hello there,\n world. ")
    assert to_text(t) == "Hello there, world.\n"


def test_segments_without_words_still_give_timed_cues() -> None:
    base = transcript(evenly(LONG))
    no_words = Transcript(
        job_id="j",
        text=base.text,
        language="en",
        duration_s=base.duration_s,
        words=[],
        segments=[
            TranscriptSegment(id=0, start=0.0, end=base.duration_s, text=LONG, first_word=0, last_word=0)
        ],
        corrections=[],
        stats=STATS,
    )
    cues = build_cues(no_words)
    assert len(cues) > 3
    assert_sane(cues)
    assert cues[0].start == 0.0
    assert cues[-1].end == pytest.approx(base.duration_s, abs=0.01)
    assert " ".join(c.text.replace("\n", " ") for c in cues) == LONG


def test_a_language_written_without_spaces_gets_none_in_subtitles() -> None:
    words = [(ch, i * 0.3, i * 0.3 + 0.3) for i, ch in enumerate("客観的な事実を大切にしてください")]
    japanese = msgspec.structs.replace(transcript(words), language="ja", text="")
    cues = build_cues(japanese)
    assert "".join(cue.text.replace("\n", "") for cue in cues) == "客観的な事実を大切にしてください"
    assert all(" " not in cue.text for cue in cues)
    assert to_text(japanese) == "客観的な事実を大切にしてください\n"
    assert wrap_lines("あ" * 50, 42, anywhere=True) == "あ" * 25 + "\n" + "あ" * 25
