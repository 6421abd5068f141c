"""The OpenAI-compatible request fields and answer shapes (pure)."""

from __future__ import annotations

import math

import pytest
from relisten_ingest.domain import OptionError
from relisten_ingest.openai_compat import (
    TranscriptionRequest,
    compression_ratio,
    error_body,
    json_body,
    language_name,
    parse_transcription_request,
    verbose_json_body,
)

from .fake_pipeline import TEXT, make_first_pass, make_transcript


def test_defaults() -> None:
    asked = parse_transcription_request({})
    assert asked == TranscriptionRequest(model="relisten", response_format="json")
    assert asked.segments and not asked.words


@pytest.mark.parametrize(
    ("fields", "granularities"),
    [
        ({"timestamp_granularities[]": ["word", "segment"]}, {"word", "segment"}),
        ({"timestamp_granularities[]": ["word"]}, {"word"}),
        ({"timestamp_granularities": ["Word, segment"]}, {"word", "segment"}),
        ({"timestamp_granularities[]": ["", " "]}, set()),
    ],
)
def test_granularities(fields: dict[str, list[str]], granularities: set[str]) -> None:
    assert parse_transcription_request(fields).granularities == granularities


def test_fields_are_read() -> None:
    asked = parse_transcription_request(
        {"model": ["whisper-1"], "response_format": [" VERBOSE_JSON "], "temperature": ["0.4"]}
    )
    assert (asked.model, asked.response_format, asked.temperature) == ("whisper-1", "verbose_json", 0.4)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"response_format": ["diarized_json"]}, "response_format"),
        ({"timestamp_granularities[]": ["sentence"]}, "timestamp_granularities[]"),
        ({"temperature": ["warm"]}, "temperature"),
        ({"temperature": ["1.5"]}, "temperature"),
        ({"temperature": ["nan"]}, "temperature"),
    ],
)
def test_bad_fields(fields: dict[str, list[str]], field: str) -> None:
    with pytest.raises(OptionError) as caught:
        parse_transcription_request(fields)
    assert caught.value.field == field


def test_language_names() -> None:
    assert language_name("en") == "english"
    assert language_name("yue") == "cantonese"
    assert language_name("ht") == "haitian creole"
    assert language_name("xx") == "xx"


def test_json_body() -> None:
    assert json_body(make_transcript("j")) == {"text": TEXT}


def test_verbose_json_with_first_pass_signals() -> None:
    asked = TranscriptionRequest(granularities=frozenset({"word", "segment"}), temperature=0.3)
    body = verbose_json_body(make_transcript("j"), asked, make_first_pass())
    assert body["task"] == "transcribe" and body["language"] == "english"
    assert body["duration"] == 5.0 and body["text"] == TEXT
    assert body["words"][1] == {"word": "Quilter", "start": 0.4, "end": 0.9, "probability": 0.88}
    assert [s["id"] for s in body["segments"]] == [0, 1]
    second = body["segments"][1]
    assert second == {
        "id": 1,
        "seek": 400,
        "start": 4.0,
        "end": 4.6,
        "text": " Welcome.",
        "tokens": [],
        "temperature": 0.3,
        "avg_logprob": -0.2,
        "compression_ratio": 0.8,
        "no_speech_prob": 0.02,
    }
    assert body["usage"] == {"type": "duration", "seconds": 5}


def test_verbose_json_without_a_first_pass_derives_the_signals() -> None:
    body = verbose_json_body(make_transcript("j"), TranscriptionRequest(), None)
    assert "words" not in body
    welcome = body["segments"][1]
    assert welcome["avg_logprob"] == pytest.approx(round(math.log(0.9), 4))
    assert welcome["compression_ratio"] == pytest.approx(round(compression_ratio(" Welcome."), 4))
    assert welcome["no_speech_prob"] == 0.0


def test_only_words_leaves_segments_out() -> None:
    body = verbose_json_body(make_transcript("j"), TranscriptionRequest(granularities=frozenset({"word"})))
    assert "segments" not in body and len(body["words"]) == 10


def test_compression_ratio_flags_loops() -> None:
    assert compression_ratio("") == 0.0
    assert compression_ratio("thank you " * 40) > 2.4 > compression_ratio("Mister Quilter is the apostle.")


def test_error_body() -> None:
    assert error_body("bad", status=400, code="invalid_value", param="temperature") == {
        "error": {
            "message": "bad",
            "type": "invalid_request_error",
            "param": "temperature",
            "code": "invalid_value",
        }
    }
    assert error_body("down", status=503)["error"]["type"] == "server_error"
