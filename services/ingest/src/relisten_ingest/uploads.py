"""Receiving a ``multipart/form-data`` upload as a stream, straight to a file in a scratch directory.

Starlette's ``request.form()`` would spool the file to the system temporary directory under a name
of its choosing; this reader writes the ``file`` part to a known path in the request's own scratch
directory (so cleaning up is removing one directory), keeps the other fields small and in memory,
and counts every body byte so that an upload over the limit is stopped as soon as it passes it,
whatever ``Content-Length`` said.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

FILE_FIELD: Final = "file"
MAX_FIELD_BYTES: Final = 64 * 1024
MAX_PARTS: Final = 64


class UploadTooLarge(Exception):
    """The request body passed the configured limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the upload is larger than the limit of {limit} bytes")
        self.limit = limit


class InvalidForm(Exception):
    """The body is not a well-formed ``multipart/form-data`` form this API can read."""


class NotMultipart(InvalidForm):
    """The body is not a form at all, so it cannot hold the file."""


@dataclass
class ReceivedFile:
    path: Path
    filename: str
    content_type: str
    size: int = 0
    sha256: str = ""
    """Hex SHA-256 of the file's bytes, computed as they were written (an Idempotency-Key's fingerprint)."""


@dataclass
class ReceivedForm:
    fields: dict[str, str] = field(default_factory=dict)
    """Each text field's value; the last one when a field is repeated."""
    file: ReceivedFile | None = None
    repeated: dict[str, list[str]] = field(default_factory=dict)
    """Every value of each text field in order (``timestamp_granularities[]`` comes once per value)."""


async def limit_body(chunks: AsyncIterator[bytes], max_bytes: int) -> AsyncIterator[bytes]:
    """Pass ``chunks`` through, raising :class:`UploadTooLarge` once more than ``max_bytes`` went by."""
    total = 0
    async for chunk in chunks:
        total += len(chunk)
        if total > max_bytes:
            raise UploadTooLarge(max_bytes)
        yield chunk


class UploadIdle(Exception):
    """The body sent nothing for longer than the idle limit (a trickling or stalled client)."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(f"the upload sent nothing for {timeout_s:g} s")
        self.timeout_s = timeout_s


async def idle_limited(chunks: AsyncIterator[bytes], timeout_s: float) -> AsyncIterator[bytes]:
    """Pass ``chunks`` through, raising :class:`UploadIdle` when the next one takes over ``timeout_s``.

    Per chunk, not per body: a large upload over a slow but steady link is fine, a client that
    holds the connection open while sending a byte now and then is not."""
    iterator = aiter(chunks)
    while True:
        try:
            async with asyncio.timeout(timeout_s):
                chunk = await anext(iterator)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise UploadIdle(timeout_s) from None
        yield chunk


def multipart_boundary(content_type: str | None) -> bytes:
    """The boundary of a ``multipart/form-data`` Content-Type; :class:`InvalidForm` otherwise."""
    if not content_type:
        raise NotMultipart("send the audio as the field 'file' of a multipart/form-data body")
    media_type, params = parse_options_header(content_type)
    if media_type != b"multipart/form-data":
        raise NotMultipart(
            "send the audio as the field 'file' of a multipart/form-data body, "
            f"not {media_type.decode('latin-1')[:80] or 'an empty Content-Type'}"
        )
    boundary = params.get(b"boundary")
    if not boundary:
        raise InvalidForm("the multipart/form-data Content-Type has no boundary")
    return boundary


class _FormReader:
    """Callbacks of python-multipart's push parser; file bytes are queued for the async writer."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.form = ReceivedForm()
        self.pending: list[bytes] = []
        self.sink: IO[bytes] | None = None
        self._parts = 0
        self._header_name = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._name = ""
        self._in_file = False
        self._skip = False
        self._data = bytearray()
        self.ended = False

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_end": self.on_end,
        }

    def on_part_begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise InvalidForm(f"more than {MAX_PARTS} form fields")
        self._headers = {}
        self._data = bytearray()
        self._in_file = self._skip = False

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._header_name.strip().lower()] = self._header_value.strip()
        self._header_name = self._header_value = b""

    def on_headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition"))
        raw_name = params.get(b"name")
        if raw_name is None:
            raise InvalidForm('a form part has no Content-Disposition "name"')
        self._name = _decode(raw_name)
        if self._name == FILE_FIELD:
            # A part named "file" is the upload whether or not the client gave it a filename.
            if self.form.file is not None:
                raise InvalidForm(f"send exactly one {FILE_FIELD!r} part")
            raw_filename = params.get(b"filename", b"")
            self.form.file = ReceivedFile(
                path=self.target,
                filename=_decode(raw_filename),
                content_type=_decode(self._headers.get(b"content-type", b"")),
            )
            self._in_file = True
        elif b"filename" in params:
            self._skip = True  # a file under another name: not ours to store

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self.pending.append(data[start:end])
        elif not self._skip:
            self._data += data[start:end]
            if len(self._data) > MAX_FIELD_BYTES:
                raise InvalidForm(
                    f"the form field {self._name[:40]!r} is longer than {MAX_FIELD_BYTES} bytes"
                )

    def on_part_end(self) -> None:
        if not self._in_file and not self._skip:
            try:
                value = self._data.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidForm(f"the form field {self._name[:40]!r} is not UTF-8 text") from None
            self.form.fields[self._name] = value
            self.form.repeated.setdefault(self._name, []).append(value)
        self._in_file = self._skip = False

    def on_end(self) -> None:
        self.ended = True


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _write_all(sink: IO[bytes], chunks: list[bytes], digest: hashlib._Hash) -> int:
    for chunk in chunks:
        sink.write(chunk)
        digest.update(chunk)
    return sum(len(c) for c in chunks)


async def receive_form(
    content_type: str | None, body: AsyncIterator[bytes], target: Path, *, max_bytes: int
) -> ReceivedForm:
    """Read a multipart form from ``body``; its ``file`` part is written to ``target``.

    Raises :class:`InvalidForm` or :class:`UploadTooLarge`. ``target`` may be left behind
    half-written on error: the caller owns its directory.
    """
    boundary = multipart_boundary(content_type)
    reader = _FormReader(target)
    digest = hashlib.sha256()
    written = 0
    with open(target, "wb") as sink:  # noqa: ASYNC230 -- creating an empty local file does not block
        try:
            parser = MultipartParser(boundary, reader.callbacks())
            async for chunk in limit_body(body, max_bytes):
                parser.write(chunk)
                if reader.pending:
                    # Disk writes go to a thread so that a slow disk does not stall other requests.
                    batch, reader.pending = reader.pending, []
                    written += await asyncio.to_thread(_write_all, sink, batch, digest)
            parser.finalize()
        except FormParserError as exc:
            raise InvalidForm(f"the multipart/form-data body is malformed ({exc})") from None
        if not reader.ended:
            # python-multipart's finalize() does not check this: a body cut short would pass.
            raise InvalidForm("the multipart/form-data body ended before its closing boundary")
        if reader.pending:
            written += await asyncio.to_thread(_write_all, sink, reader.pending, digest)
    if reader.form.file is not None:
        reader.form.file.size = written
        reader.form.file.sha256 = digest.hexdigest()
    return reader.form
