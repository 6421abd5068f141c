"""Unit tests of the pure rules: option parsing, the job view projection, presenting a view."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from relisten_contracts import (
    ClipCorrected,
    ClipSpec,
    ClipsReady,
    ErrorInfo,
    Event,
    JobCreated,
    JobFailed,
    JobMerged,
    JobOptions,
    JobProgress,
    JobView,
    WordsScored,
)
from relisten_ingest.domain import (
    OptionError,
    apply_event,
    iso_utc,
    overall_progress,
    parse_options,
    present_view,
    safe_filename,
)

from relisten.testing import job_merged

JOB = "job1"


# --- options ----------------------------------------------------------------------------------


def test_defaults_when_no_fields() -> None:
    assert parse_options({}) == JobOptions(
        language=None, prompt=None, correction="auto", confidence_threshold=0.6, callback_url=None
    )


def test_empty_fields_take_defaults() -> None:
    fields = {"language": " ", "prompt": "", "correction": "", "confidence_threshold": "", "callback_url": ""}
    assert parse_options(fields) == JobOptions()


def test_all_fields() -> None:
    options = parse_options(
        {
            "language": "en-US",
            "prompt": "  Quilter, LibriVox  ",
            "correction": "OFF",
            "confidence_threshold": "0.45",
            "callback_url": "https://example.org/hook?x=1",
            "something_new": "ignored",
        }
    )
    assert options == JobOptions(
        language="en",
        prompt="Quilter, LibriVox",
        correction="off",
        confidence_threshold=0.45,
        callback_url="https://example.org/hook?x=1",
    )


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("en", "en"),
        ("EN", "en"),
        ("yue", "yue"),
        ("zh-Hant", "zh"),
        ("pt_BR", "pt"),
        ("auto", None),
        ("", None),
    ],
)
def test_language_codes(language: str, expected: str | None) -> None:
    assert parse_options({"language": language}).language == expected


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("correction", "maybe"),
        ("correction", "on"),
        ("confidence_threshold", "2"),
        ("confidence_threshold", "-0.1"),
        ("confidence_threshold", "abc"),
        ("confidence_threshold", "nan"),
        ("confidence_threshold", "inf"),
        ("callback_url", "ftp://example.org/x"),
        ("callback_url", "example.org/hook"),
        ("callback_url", "http://"),
        ("callback_url", "https://exa mple.org/"),
        ("callback_url", "http://example.org:99999/"),
        ("callback_url", "https://example.org/" + "a" * 3000),
        ("language", "english"),
        ("language", "e"),
        ("language", "en-"),
        ("language", "12"),
        ("prompt", "x" * 5000),
    ],
)
def test_invalid_options(field: str, value: str) -> None:
    with pytest.raises(OptionError) as caught:
        parse_options({field: value})
    assert caught.value.field == field
    assert caught.value.message.startswith(f"{field}: ")


@pytest.mark.parametrize(
    "url", ["http://localhost:9000/hook", "http://127.0.0.1/x", "https://[::1]/", "http://169.254.169.254/"]
)
def test_internal_callbacks_are_refused_only_when_denied(url: str) -> None:
    assert parse_options({"callback_url": url}).callback_url == url
    with pytest.raises(OptionError) as caught:
        parse_options({"callback_url": url}, deny_internal_callbacks=True)
    assert caught.value.field == "callback_url" and "internal address" in caught.value.message
    public = "https://hooks.example.org/relisten"
    assert parse_options({"callback_url": public}, deny_internal_callbacks=True).callback_url == public


@pytest.mark.parametrize("value", ["0", "1", "0.0", "1.0", "0.6"])
def test_threshold_bounds_are_inclusive(value: str) -> None:
    assert parse_options({"confidence_threshold": value}).confidence_threshold == float(value)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("talk.mp3", "talk.mp3"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\talk.wav", "talk.wav"),
        ("bad\x00name\n.wav", "badname.wav"),
        (None, ""),
        ("x" * 300, "x" * 255),
    ],
)
def test_safe_filename(name: str | None, expected: str) -> None:
    assert safe_filename(name) == expected


# --- projection -------------------------------------------------------------------------------


def created(at: float = 100.0) -> JobCreated:
    return JobCreated(
        job_id=JOB,
        occurred_at=at,
        filename="talk.wav",
        original_ref=f"{JOB}/original",
        audio_ref=f"{JOB}/audio.wav",
        duration_s=12.5,
        options=JobOptions(language="en"),
        created_at=at,
    )


def progress(stage: Any, fraction: float, at: float) -> JobProgress:
    return JobProgress(job_id=JOB, occurred_at=at, stage=stage, progress=fraction)


def scored(at: float) -> WordsScored:
    return WordsScored(
        job_id=JOB,
        occurred_at=at,
        audio_ref="a",
        words_ref="w",
        language="en",
        duration_s=12.5,
        word_count=30,
        first_pass_seconds=1.0,
        engine="tiny",
    )


def clip(index: int) -> ClipSpec:
    return ClipSpec(
        index=index,
        start_s=index,
        end_s=index + 1.0,
        start_sample=index * 16000,
        end_sample=(index + 1) * 16000,
        audio_ref="a",
        flagged_word_indices=[index],
        trigger_confidence=0.3,
    )


def ready(count: int, at: float) -> ClipsReady:
    return ClipsReady(
        job_id=JOB,
        occurred_at=at,
        audio_ref="a",
        words_ref="w",
        plan_ref="p",
        language="en",
        duration_s=12.5,
        first_pass_seconds=1.0,
        words_flagged=count,
        clips=[clip(i) for i in range(count)],
    )


def corrected(index: int, count: int, at: float) -> ClipCorrected:
    return ClipCorrected(
        job_id=JOB,
        occurred_at=at,
        clip_index=index,
        clip_count=count,
        plan_ref="p",
        ok=True,
        backend="base",
        result_key=f"{JOB}.{index}",
    )


def merged(at: float) -> JobMerged:
    return job_merged(
        JOB,
        occurred_at=at,
        duration_s=12.5,
        corrections_accepted=1,
        words_flagged=2,
        first_pass_seconds=1.0,
        second_pass_seconds=2.0,
        audio_redecoded_seconds=3.0,
    )


def failed(at: float) -> JobFailed:
    return JobFailed(
        job_id=JOB, occurred_at=at, stage="transcribing", error=ErrorInfo(code="asr_failed", message="boom")
    )


def replay(*events: Event) -> JobView | None:
    view: JobView | None = None
    for event in events:
        view = apply_event(view, event)
    return view


TRANSITIONS: list[tuple[str, list[Event], str, float, dict[str, Any]]] = [
    # (case, events in delivery order, status, progress, other expected fields)
    ("created", [created()], "queued", 0.0, {"filename": "talk.wav", "duration_s": 12.5}),
    ("queued progress", [created(), progress("queued", 1.0, 101)], "queued", 0.05, {}),
    ("transcribing starts", [created(), progress("transcribing", 0.0, 101)], "transcribing", 0.05, {}),
    ("transcribing half", [created(), progress("transcribing", 0.5, 101)], "transcribing", 0.325, {}),
    ("progress clamped", [created(), progress("transcribing", 7.0, 101)], "transcribing", 0.6, {}),
    ("words scored", [created(), scored(102)], "correcting", 0.6, {}),
    ("clips ready", [created(), scored(102), ready(4, 103)], "correcting", 0.6, {"clip_count": 4}),
    ("no clips", [created(), scored(102), ready(0, 103)], "merging", 0.9, {"clip_count": 0}),
    (
        "one of four corrected",
        [created(), ready(4, 103), corrected(2, 4, 104)],
        "correcting",
        0.675,
        {"clips_done": [2]},
    ),
    (
        "all corrected",
        [created(), ready(2, 103), corrected(1, 2, 104), corrected(0, 2, 105)],
        "merging",
        0.9,
        {"clips_done": [0, 1]},
    ),
    (
        "merging progress",
        [created(), ready(0, 103), progress("merging", 0.5, 106)],
        "merging",
        0.945,
        {},
    ),
    (
        "merged",
        [created(), ready(0, 103), merged(107)],
        "completed",
        1.0,
        {"transcript_ref": f"{JOB}/transcript.json"},
    ),
    (
        "failed keeps progress",
        [created(), progress("transcribing", 0.5, 101), failed(102)],
        "failed",
        0.325,
        {"error": ErrorInfo(code="asr_failed", message="boom")},
    ),
    # Out of order and late deliveries.
    (
        "late transcribing progress after words scored",
        [created(), scored(102), progress("transcribing", 0.9, 101)],
        "correcting",
        0.6,
        {},
    ),
    (
        "lower progress of the same stage",
        [created(), progress("transcribing", 0.8, 102), progress("transcribing", 0.2, 101)],
        "transcribing",
        0.49,
        {},
    ),
    (
        "clip corrected before clips ready",
        [created(), corrected(1, 2, 104), ready(2, 103)],
        "correcting",
        0.75,
        {"clip_count": 2, "clips_done": [1]},
    ),
    (
        "all clips before clips ready",
        [created(), corrected(1, 2, 104), corrected(0, 2, 105), ready(2, 103)],
        "merging",
        0.9,
        {"clip_count": 2},
    ),
    (
        "duplicate clip counted once",
        [created(), ready(2, 103), corrected(1, 2, 104), corrected(1, 2, 104)],
        "correcting",
        0.75,
        {"clips_done": [1]},
    ),
    (
        "completed is final",
        [created(), merged(107), failed(108), progress("merging", 0.1, 109), corrected(0, 1, 110)],
        "completed",
        1.0,
        {"error": None, "updated_at": 107.0},
    ),
    (
        "failed is final",
        [created(), failed(102), merged(107)],
        "failed",
        0.0,
        {"transcript_ref": None},
    ),
    (
        "merged before anything else",
        [created(), merged(107), scored(102)],
        "completed",
        1.0,
        {},
    ),
    (
        "progress of a terminal stage is ignored",
        [created(), progress("completed", 1.0, 101)],
        "queued",
        0.0,
        {"updated_at": 100.0},
    ),
    (
        "created again on a later view refreshes nothing but facts",
        [created(), scored(102), created(100)],
        "correcting",
        0.6,
        {"created_at": 100.0, "updated_at": 102.0},
    ),
]


@pytest.mark.parametrize(
    ("events", "status", "expected_progress", "fields"),
    [pytest.param(e, s, p, f, id=name) for name, e, s, p, f in TRANSITIONS],
)
def test_transitions(
    events: list[Event], status: str, expected_progress: float, fields: dict[str, Any]
) -> None:
    view = replay(*events)
    assert view is not None
    assert view.status == status
    assert view.progress == pytest.approx(expected_progress)
    for name, value in fields.items():
        assert getattr(view, name) == value, name


@pytest.mark.parametrize(("events",), [pytest.param(e, id=name) for name, e, *_ in TRANSITIONS])
def test_applying_an_event_twice_changes_nothing(events: list[Event]) -> None:
    once = replay(*events)
    assert apply_event(once, events[-1]) == once


def test_status_and_progress_never_go_back_in_any_delivery_order() -> None:
    events: list[Event] = [
        progress("transcribing", 0.5, 101),
        scored(102),
        ready(2, 103),
        corrected(0, 2, 104),
        corrected(1, 2, 105),
        progress("merging", 0.5, 106),
        merged(107),
    ]
    rank = {"queued": 0, "transcribing": 1, "correcting": 2, "merging": 3, "completed": 4}
    for order in itertools.permutations(events):
        view = apply_event(None, created())
        assert view is not None
        for event in order:
            after = apply_event(view, event)
            assert after is not None
            assert rank[after.status] >= rank[view.status]
            assert after.progress >= view.progress
            assert after.updated_at >= view.updated_at
            view = after
        assert view.status == "completed" and view.progress == 1.0


def test_events_of_an_unknown_job_make_no_view() -> None:
    for event in (
        progress("transcribing", 0.1, 1),
        scored(1),
        ready(1, 1),
        corrected(0, 1, 1),
        merged(1),
        failed(1),
    ):
        assert apply_event(None, event) is None


def test_updated_at_follows_the_latest_event() -> None:
    view = replay(created(100), progress("transcribing", 0.1, 150), scored(140))
    assert view is not None
    assert view.created_at == 100
    assert view.updated_at == 150


@pytest.mark.parametrize(
    ("stage", "fraction", "expected"),
    [
        ("queued", 0.0, 0.0),
        ("transcribing", 1.0, 0.6),
        ("correcting", 0.0, 0.6),
        ("correcting", 1.0, 0.9),
        ("merging", 1.0, 0.99),
        ("completed", 0.0, 1.0),
        ("failed", 0.5, 0.0),
        ("transcribing", float("nan"), 0.05),
        ("transcribing", -1.0, 0.05),
    ],
)
def test_overall_progress(stage: Any, fraction: float, expected: float) -> None:
    assert overall_progress(stage, fraction) == pytest.approx(expected)


# --- presentation -----------------------------------------------------------------------------


def test_iso_utc() -> None:
    assert iso_utc(0) == "1970-01-01T00:00:00.000Z"
    assert iso_utc(1714564800.25) == "2024-05-01T12:00:00.250Z"


def test_present_view() -> None:
    view = replay(created(1714564800.0), ready(2, 1714564801.5), corrected(0, 2, 1714564802.0))
    assert view is not None
    body = present_view(view)
    assert body["id"] == JOB
    assert body["status"] == "correcting"
    assert body["progress"] == 0.75
    assert body["error"] is None
    assert body["created_at"] == "2024-05-01T12:00:00.000Z"
    assert body["updated_at"] == "2024-05-01T12:00:02.000Z"
    assert body["clips"] == {"total": 2, "done": 1}
    assert body["options"]["language"] == "en"
    assert body["links"] == {"self": f"/v1/jobs/{JOB}", "audio": f"/v1/jobs/{JOB}/audio", "transcript": None}


def test_present_failed_view() -> None:
    view = replay(created(), failed(101))
    assert view is not None
    body = present_view(view)
    assert body["status"] == "failed"
    assert body["error"] == {"code": "asr_failed", "message": "boom"}
