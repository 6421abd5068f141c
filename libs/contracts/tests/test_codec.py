"""The codec round-trips every event and gives stable message ids."""

import msgspec
import pytest
from relisten_contracts import (
    ClipCorrected,
    JobCreated,
    JobOptions,
    JobProgress,
    Subject,
    decode_event,
    encode,
    message_id,
    subject_for,
)


def test_round_trip_keeps_type_and_fields() -> None:
    event = JobCreated(
        job_id="j1",
        filename="a.wav",
        original_ref="j1/original",
        audio_ref="j1/audio.wav",
        duration_s=3.5,
        options=JobOptions(language="en", confidence_threshold=0.5),
    )
    data = encode(event)
    assert b'"type":"job.created.v1"' in data
    assert decode_event(data) == event


def test_message_ids_are_deterministic_and_distinct_per_clip() -> None:
    def clip(i: int) -> ClipCorrected:
        return ClipCorrected(
            job_id="j",
            clip_index=i,
            clip_count=2,
            plan_ref="p",
            ok=True,
            backend="b",
            result_key="k",
        )

    assert message_id(clip(0)) == message_id(clip(0))
    assert message_id(clip(0)) != message_id(clip(1))
    progress = JobProgress(job_id="j", stage="transcribing", progress=0.5)
    assert message_id(progress) == "job.progress.v1:j:transcribing:50"


def test_subject_follows_tag() -> None:
    assert subject_for("clip.corrected.v1") is Subject.CLIP_CORRECTED


def test_events_are_frozen_and_keyword_only() -> None:
    event = JobProgress(job_id="j", stage="queued")
    with pytest.raises(AttributeError):
        event.job_id = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        JobProgress("j", "queued")  # type: ignore[call-arg, arg-type]


def test_unknown_payload_is_rejected() -> None:
    with pytest.raises(msgspec.ValidationError):
        decode_event(b'{"type":"nope.v1","job_id":"x"}')
