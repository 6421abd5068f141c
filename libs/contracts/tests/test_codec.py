"""The codec round-trips every event and gives stable message ids."""

import msgspec
import pytest
from relisten_contracts import (
    ClipCorrected,
    ErrorInfo,
    FirstPass,
    JobCreated,
    JobFailed,
    JobOptions,
    JobProgress,
    JobRetried,
    Routing,
    Subject,
    decode_event,
    encode,
    message_id,
    subject_for,
    words_scored,
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


def test_a_retried_runs_events_get_ids_of_their_own() -> None:
    failed = JobFailed(job_id="j", stage="asr", error=ErrorInfo(code="c", message="m"))
    assert message_id(failed) == "job.failed.v1:j"  # run 0 keeps the ids it always had
    rerun = msgspec.structs.replace(failed, attempt=2)
    assert message_id(rerun) == "job.failed.v1:j:a2"
    progress = JobProgress(job_id="j", stage="merging", progress=0.1, attempt=1)
    assert message_id(progress) == "job.progress.v1:j:merging:10:a1"
    retried = JobRetried(job_id="j", attempt=1, resume_from="job.created")
    assert decode_event(encode(retried)) == retried
    assert subject_for("job.retried.v1") is Subject.JOB_RETRIED


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


def test_words_scored_carries_the_routing_of_the_first_pass() -> None:
    # The asr service and a retry from the stored first pass announce it alike: a language routed
    # past the second pass keeps correction off in both.
    routing = Routing(task="transcribe", language="es", first_pass="base", second_pass=False, reason="es")
    first = FirstPass(
        language="es", duration_s=2.0, words=[], segments=[], engine="base", seconds=0.5, routing=routing
    )
    event = words_scored(
        "j", first, audio_ref="j/audio.wav", words_ref="j/first_pass.json", options=JobOptions(), attempt=2
    )
    assert (event.options.correction, event.attempt, event.language, event.word_count) == ("off", 2, "es", 0)
    english = msgspec.structs.replace(first, routing=None)
    assert (
        words_scored("j", english, audio_ref="a", words_ref="w", options=JobOptions()).options.correction
        == "auto"
    )
