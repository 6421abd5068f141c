"""The streaming multipart reader: fields, the file on disk, byte limits and malformed bodies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from relisten_ingest.uploads import (
    MAX_FIELD_BYTES,
    InvalidForm,
    NotMultipart,
    UploadTooLarge,
    limit_body,
    receive_form,
)


def encoded(**kwargs: Any) -> tuple[str, bytes]:
    request = httpx.Request("POST", "http://x/", **kwargs)
    return request.headers["content-type"], request.read()


async def chunks(body: bytes, size: int = 7) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def test_fields_and_file(tmp_path: Path) -> None:
    payload = bytes(range(256)) * 100
    content_type, body = encoded(
        data={"language": "en", "prompt": "Grüße"}, files={"file": ("talk.wav", payload, "audio/wav")}
    )
    target = tmp_path / "upload"
    form = await receive_form(content_type, chunks(body, 1000), target, max_bytes=len(body))
    assert form.fields == {"language": "en", "prompt": "Grüße"}
    assert form.file is not None
    assert (form.file.filename, form.file.content_type, form.file.size) == (
        "talk.wav",
        "audio/wav",
        len(payload),
    )
    assert target.read_bytes() == payload


async def test_a_file_under_another_name_is_not_stored(tmp_path: Path) -> None:
    content_type, body = encoded(files={"other": ("x.bin", b"zzz"), "file": ("a.wav", b"abc")})
    target = tmp_path / "upload"
    form = await receive_form(content_type, chunks(body), target, max_bytes=10_000)
    assert form.file is not None and target.read_bytes() == b"abc"
    assert "other" not in form.fields


async def test_no_file(tmp_path: Path) -> None:
    content_type, body = encoded(data={"language": "en"}, files={"dummy": ("", b"")})
    form = await receive_form(content_type, chunks(body), tmp_path / "upload", max_bytes=10_000)
    assert form.file is None


async def test_limit_is_enforced_while_streaming(tmp_path: Path) -> None:
    content_type, body = encoded(files={"file": ("a.wav", b"x" * 5000)})
    seen = 0

    async def counted() -> AsyncIterator[bytes]:
        nonlocal seen
        async for chunk in chunks(body, 100):
            seen += len(chunk)
            yield chunk

    with pytest.raises(UploadTooLarge):
        await receive_form(content_type, counted(), tmp_path / "upload", max_bytes=1000)
    assert seen <= 1100  # stopped at the limit, not after reading everything


async def test_limit_body_passes_exactly_the_limit() -> None:
    received = [c async for c in limit_body(chunks(b"x" * 100, 10), 100)]
    assert b"".join(received) == b"x" * 100
    with pytest.raises(UploadTooLarge):
        _ = [c async for c in limit_body(chunks(b"x" * 101, 10), 100)]


@pytest.mark.parametrize(
    "content_type", [None, "application/json", "application/x-www-form-urlencoded", "audio/wav"]
)
async def test_not_multipart(tmp_path: Path, content_type: str | None) -> None:
    with pytest.raises(NotMultipart):
        await receive_form(content_type, chunks(b"{}"), tmp_path / "upload", max_bytes=1000)


async def test_missing_boundary(tmp_path: Path) -> None:
    with pytest.raises(InvalidForm, match="boundary"):
        await receive_form("multipart/form-data", chunks(b""), tmp_path / "upload", max_bytes=1000)


async def test_body_cut_short(tmp_path: Path) -> None:
    content_type, body = encoded(files={"file": ("a.wav", b"x" * 500)})
    with pytest.raises(InvalidForm, match="closing boundary"):
        await receive_form(content_type, chunks(body[:-30]), tmp_path / "upload", max_bytes=10_000)


async def test_garbage_body(tmp_path: Path) -> None:
    with pytest.raises(InvalidForm):
        await receive_form(
            "multipart/form-data; boundary=abc",
            chunks(b"no boundary here at all"),
            tmp_path / "u",
            max_bytes=1000,
        )


async def test_two_files(tmp_path: Path) -> None:
    content_type, body = encoded(files=[("file", ("a.wav", b"a")), ("file", ("b.wav", b"b"))])
    with pytest.raises(InvalidForm, match="exactly one"):
        await receive_form(content_type, chunks(body), tmp_path / "upload", max_bytes=10_000)


async def test_oversized_field(tmp_path: Path) -> None:
    content_type, body = encoded(data={"prompt": "x" * (MAX_FIELD_BYTES + 1)}, files={"file": ("a", b"a")})
    with pytest.raises(InvalidForm, match="prompt"):
        await receive_form(content_type, chunks(body, 4096), tmp_path / "upload", max_bytes=10**6)
