"""Pure parts of the corrector's backends: the remote model's name, and the words of a verbose_json answer."""

from __future__ import annotations

import pytest
from relisten_corrector.backends import BackendError, words_from_verbose_json
from relisten_corrector.settings import CorrectorSettings


def test_remote_model_names() -> None:
    gpu = "http://gpu:8000"
    assert CorrectorSettings(backend="vllm", base_url=gpu).remote_model() == "Qwen/Qwen2-Audio-7B-Instruct"
    assert CorrectorSettings(backend="openai", base_url=gpu, model="m").remote_model() == "m"
    assert CorrectorSettings(backend="openai", base_url=gpu).remote_model() == "whisper-1"
    assert CorrectorSettings().second_pass_model == "bundled:base"


def test_verbose_json_words_defaults_and_fallbacks() -> None:
    body = {
        "text": "a b",
        "words": [
            {"word": " a", "start": 0.1, "end": 0.3},
            {"word": "b", "start": 0.3, "end": 0.2, "probability": 0.4},
        ],
    }
    words = words_from_verbose_json(body)
    assert words is not None
    assert [(w.word, w.start, w.end, w.probability) for w in words] == [
        ("a", 0.1, 0.3, 1.0),
        ("b", 0.3, 0.3, 0.4),
    ]
    in_segments = {
        "text": "a",
        "segments": [{"words": [{"word": "a", "start": 0.0, "end": 0.1, "probability": 0.9}]}],
    }
    assert [w.word for w in words_from_verbose_json(in_segments) or []] == ["a"]
    assert words_from_verbose_json({"text": "a"}) is None
    with pytest.raises(BackendError):
        words_from_verbose_json({"words": [{"word": "a", "start": "x", "end": 1}]})
