"""Refusal at submission of what no configured model can do (pure rules; the e2e test runs them
against the asr's stored capabilities)."""

from __future__ import annotations

import pytest
from relisten_contracts import AsrCapabilities, JobOptions
from relisten_ingest.domain import OptionError, parse_options
from relisten_ingest.languages import refusal

ENGLISH_ONLY = AsrCapabilities(languages=["en"], translate=False, engines=["faster-whisper:tiny.en"])
MULTILINGUAL = AsrCapabilities(
    languages=["de", "en", "es", "fr", "ja"],
    translate=True,
    engines=["faster-whisper:tiny.en", "faster-whisper:base"],
)


def test_a_language_no_model_knows_is_refused() -> None:
    message = refusal(JobOptions(language="es"), ENGLISH_ONLY)
    assert message is not None and "'es'" in message and "tiny.en" in message
    assert refusal(JobOptions(language="es"), MULTILINGUAL) is None
    assert refusal(JobOptions(language="tlh"), MULTILINGUAL) is not None


def test_translation_needs_a_multilingual_model() -> None:
    assert refusal(JobOptions(task="translate"), ENGLISH_ONLY) is not None
    assert refusal(JobOptions(task="translate"), MULTILINGUAL) is None


def test_no_capabilities_stored_yet_admits_everything() -> None:
    assert refusal(JobOptions(language="es", task="translate"), None) is None


def test_unnamed_language_and_english_always_pass() -> None:
    assert refusal(JobOptions(), ENGLISH_ONLY) is None
    assert refusal(JobOptions(language="en"), ENGLISH_ONLY) is None


def test_task_option() -> None:
    assert parse_options({}).task == "transcribe"
    assert parse_options({"task": " Translate "}).task == "translate"
    with pytest.raises(OptionError) as caught:
        parse_options({"task": "summarise"})
    assert caught.value.field == "task"
