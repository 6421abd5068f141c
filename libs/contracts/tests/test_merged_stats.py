"""job.merged carries a transcript's stats as flat fields (kept for the events already written); one pair
of functions goes between the two, and a job.merged from before still decodes to the same stats."""

from __future__ import annotations

from typing import Literal

import msgspec
from relisten_contracts import (
    Correction,
    JobMerged,
    TranscriptStats,
    decode_event,
    encode,
    merged_stats,
    stats_fields,
    transcript_stats,
)

STATS = TranscriptStats(
    first_pass_seconds=12.5,
    second_pass_seconds=3.25,
    audio_redecoded_seconds=7.0,
    words_flagged=9,
    corrections_accepted=4,
    corrections_rejected=2,
    corrections_unresolved=1,
)


def merged(**stats: float | int) -> JobMerged:
    return JobMerged(
        job_id="job-1",
        transcript_ref="jobs/job-1/transcript.json",
        language="en",
        duration_s=60.0,
        text_preview="hello",
        **stats,  # type: ignore[arg-type]
    )


def test_stats_go_out_flat_and_come_back_whole() -> None:
    event = merged(**stats_fields(STATS))
    assert merged_stats(event) == STATS
    wire = decode_event(encode(event))
    assert isinstance(wire, JobMerged) and merged_stats(wire) == STATS


def test_every_stat_has_its_flat_field() -> None:
    assert set(TranscriptStats.__struct_fields__) <= set(JobMerged.__struct_fields__)


def test_an_event_written_before_reads_the_same() -> None:
    """The wire form of job.merged is unchanged: the seven numbers at the top level."""
    body = msgspec.json.decode(encode(merged(**stats_fields(STATS))))
    assert {name: body[name] for name in TranscriptStats.__struct_fields__} == msgspec.to_builtins(STATS)
    assert "stats" not in body


def test_transcript_stats_round_times_and_count_corrections_by_status() -> None:
    def correction(status: Literal["accepted", "rejected", "unresolved"]) -> Correction:
        return Correction(
            start=0.0,
            end=1.0,
            trigger_confidence=0.2,
            original_text="a",
            corrected_text="b",
            status=status,
            reason="",
            backend="test",
        )

    stats = transcript_stats(
        first_pass_seconds=1.23456,
        second_pass_seconds=0.1,
        audio_redecoded_seconds=2.0004,
        words_flagged=4,
        corrections=[
            correction("accepted"),
            correction("rejected"),
            correction("accepted"),
            correction("unresolved"),
        ],
    )
    assert stats == TranscriptStats(
        first_pass_seconds=1.235,
        second_pass_seconds=0.1,
        audio_redecoded_seconds=2.0,
        words_flagged=4,
        corrections_accepted=2,
        corrections_rejected=1,
        corrections_unresolved=1,
    )
