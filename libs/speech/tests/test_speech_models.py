"""The bundled Whisper base, joined from its two packages once, again when damaged; other names pass."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from relisten_speech.models import SIDE_FILES, bundled_base_dir, resolve_model


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


def test_bundled_base_is_joined_once_and_reused(model_cache: Path) -> None:
    started = time.perf_counter()
    directory = bundled_base_dir(model_cache)
    joined_in = time.perf_counter() - started
    model_bin = directory / "model.bin"
    assert model_bin.stat().st_size == 94371840 + 50845767
    assert all((directory / name).is_file() for name in SIDE_FILES)
    assert [p.name for p in model_cache.iterdir() if p.name.startswith(".")] == []
    first_mtime = model_bin.stat().st_mtime_ns

    assert bundled_base_dir(model_cache) == directory
    assert model_bin.stat().st_mtime_ns == first_mtime
    print(f"joined the bundled base model in {joined_in:.2f} s")


def test_a_truncated_model_is_joined_again(tmp_path: Path) -> None:
    directory = bundled_base_dir(tmp_path)
    with open(directory / "model.bin", "r+b") as model_bin:
        model_bin.truncate(1000)
    assert bundled_base_dir(tmp_path) == directory
    assert (directory / "model.bin").stat().st_size == 94371840 + 50845767


def test_other_model_names_pass_through(model_cache: Path) -> None:
    assert resolve_model("large-v3", model_cache) == "large-v3"
    assert resolve_model("/models/my-whisper", model_cache) == "/models/my-whisper"
