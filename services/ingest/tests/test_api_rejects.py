"""Every bad upload answers a 4xx in the error shape and leaves NOTHING behind: no job view, no
object, no event, no temporary file. Runs against a real nats-server; no valid upload happens in
this module, so the stream must stay empty."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from relisten_ingest.settings import IngestSettings

from .conftest import SPEECH_WAV, STEREO_MP3, NothingStored, StartClient

pytestmark = pytest.mark.nats

WAV = SPEECH_WAV.read_bytes()


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


@pytest.fixture
async def client(
    start_client: StartClient, make_settings: Callable[..., IngestSettings]
) -> AsyncIterator[httpx.AsyncClient]:
    async with start_client(make_settings()) as client:
        yield client


@pytest.mark.parametrize(
    ("files", "status", "code"),
    [
        ({"file": ("speech.wav", b"", "audio/wav")}, 400, "empty_file"),
        (
            {"file": ("speech.wav", b"this is a text file, not a RIFF header\n" * 50, "audio/wav")},
            415,
            "unsupported_audio",
        ),
        ({"file": ("noise.mp3", random.Random(3).randbytes(50_000), "audio/mpeg")}, 415, "unsupported_audio"),
        ({"file": ("cut.wav", WAV[:30], "audio/wav")}, 415, "unsupported_audio"),
        ({"file": ("header.wav", WAV[:44], "audio/wav")}, 400, "no_audio"),
        (
            {"file": ("cut.flac", b"fLaC" + b"\x00" * 60, "audio/flac")},
            415,
            "unsupported_audio",
        ),
        (
            {"file": ("image.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 200, "image/png")},
            415,
            "unsupported_audio",
        ),
    ],
    ids=[
        "empty",
        "text-named-wav",
        "garbage",
        "truncated-wav-header",
        "header-only-wav",
        "broken-flac-header",
        "png",
    ],
)
async def test_bad_files(
    client: httpx.AsyncClient, assert_nothing_stored: NothingStored, files: Any, status: int, code: str
) -> None:
    response = await client.post("/v1/jobs", files=files)
    assert_error(response, status, code)
    await assert_nothing_stored()


async def test_video_without_audio(
    client: httpx.AsyncClient, assert_nothing_stored: NothingStored, tmp_path: Path
) -> None:
    import av
    import numpy as np

    source = tmp_path / "video.mp4"
    with av.open(str(source), "w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height = 32, 32
        for _ in range(5):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    response = await client.post("/v1/jobs", files={"file": ("clip.mp4", source.read_bytes(), "video/mp4")})
    assert_error(response, 400, "no_audio")
    await assert_nothing_stored()


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"correction": "maybe"}, "correction"),
        ({"confidence_threshold": "2"}, "confidence_threshold"),
        ({"confidence_threshold": "-0.5"}, "confidence_threshold"),
        ({"confidence_threshold": "high"}, "confidence_threshold"),
        ({"callback_url": "ftp://example.org/hook"}, "callback_url"),
        ({"callback_url": "not a url"}, "callback_url"),
        ({"language": "english!"}, "language"),
        ({"language": "x"}, "language"),
    ],
)
async def test_bad_options(
    client: httpx.AsyncClient, assert_nothing_stored: NothingStored, data: dict[str, str], field: str
) -> None:
    response = await client.post("/v1/jobs", data=data, files={"file": ("speech.wav", WAV, "audio/wav")})
    assert_error(response, 422, "invalid_option")
    assert response.json()["error"]["message"].startswith(field)
    await assert_nothing_stored()


async def test_missing_file(client: httpx.AsyncClient, assert_nothing_stored: NothingStored) -> None:
    response = await client.post("/v1/jobs", data={"language": "en"}, files={"attachment": ("a.wav", WAV)})
    assert_error(response, 400, "missing_file")
    response = await client.post("/v1/jobs")
    assert_error(response, 400, "missing_file")
    response = await client.post("/v1/jobs", json={"file": "speech.wav"})
    assert_error(response, 400, "missing_file")
    await assert_nothing_stored()


async def test_malformed_multipart(client: httpx.AsyncClient, assert_nothing_stored: NothingStored) -> None:
    response = await client.post(
        "/v1/jobs",
        content=b'--xyz\r\nContent-Disposition: form-data; name="file"\r\n\r\nRIFF',  # no closing boundary
        headers={"content-type": "multipart/form-data; boundary=xyz"},
    )
    assert_error(response, 400, "invalid_form")
    await assert_nothing_stored()


async def test_upload_too_large_by_content_length(
    start_client: StartClient,
    make_settings: Callable[..., IngestSettings],
    assert_nothing_stored: NothingStored,
) -> None:
    async with start_client(make_settings(max_upload_bytes=10_000)) as client:
        response = await client.post("/v1/jobs", files={"file": ("speech.wav", WAV, "audio/wav")})
    assert_error(response, 413, "upload_too_large")
    await assert_nothing_stored()


async def test_upload_too_large_while_streaming(
    start_client: StartClient,
    make_settings: Callable[..., IngestSettings],
    assert_nothing_stored: NothingStored,
) -> None:
    """No Content-Length (chunked): the limit is found by counting the bytes as they arrive."""
    content_type, body = _multipart(WAV)
    sent = 0

    async def stream() -> AsyncIterator[bytes]:
        nonlocal sent
        for start in range(0, len(body), 4096):
            sent += 4096
            yield body[start : start + 4096]

    async with start_client(make_settings(max_upload_bytes=10_000)) as client:
        response = await client.post("/v1/jobs", content=stream(), headers={"content-type": content_type})
    assert_error(response, 413, "upload_too_large")
    assert sent < len(body)  # the server stopped reading once the limit was passed
    await assert_nothing_stored()


async def test_audio_too_long(
    start_client: StartClient,
    make_settings: Callable[..., IngestSettings],
    assert_nothing_stored: NothingStored,
) -> None:
    async with start_client(make_settings(max_duration_s=2.0)) as client:
        response = await client.post(
            "/v1/jobs", files={"file": ("sonnet.mp3", STEREO_MP3.read_bytes(), "audio/mpeg")}
        )
    assert_error(response, 413, "audio_too_long")
    await assert_nothing_stored()


async def test_framework_errors_use_the_error_shape(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/nowhere"), 404, "not_found")
    response = await client.delete("/v1/jobs")
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["allow"]
    assert_error(await client.get("/v1/jobs", params={"limit": 0}), 422, "invalid_request")
    assert_error(await client.get("/v1/jobs/0123456789abcdef"), 404, "job_not_found")
    assert_error(await client.get("/v1/jobs/a.b*c>"), 404, "job_not_found")
    assert_error(await client.get("/v1/jobs/unknown/transcript"), 404, "job_not_found")
    assert_error(await client.get("/v1/jobs/unknown/audio"), 404, "job_not_found")
    assert_error(
        await client.get("/v1/jobs/unknown/transcript", params={"format": "docx"}), 400, "invalid_option"
    )


async def test_openapi_documents_the_upload(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    body = spec["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert body["schema"]["required"] == ["file"]
    assert set(body["schema"]["properties"]) == {
        "file",
        "language",
        "prompt",
        "correction",
        "confidence_threshold",
        "callback_url",
    }


async def test_list_is_empty(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/jobs")
    assert response.status_code == 200
    assert response.json() == {"jobs": []}


def _multipart(payload: bytes) -> tuple[str, bytes]:
    request = httpx.Request("POST", "http://x/", files={"file": ("speech.wav", payload, "audio/wav")})
    return request.headers["content-type"], request.read()
