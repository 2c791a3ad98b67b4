"""Reading an uploaded image from a request body: bounded in size, in memory only.

The body is consumed chunk by chunk and refused as soon as it passes the limit (or at once when
``Content-Length`` announces more), so a client cannot make the server buffer more than the
limit. Multipart bodies are parsed as they stream in with python-multipart's parser (the one
Starlette uses) but without Starlette's form handling, which spools files above 1 MB to temporary
files: uploaded bytes are never written to disk. (Recent FastAPI versions can bound the body
size themselves, ``FastAPI(max_body_size=...)``, but that does not change the spooling.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from python_multipart.multipart import MultipartParser, parse_options_header

#: Content types accepted as a raw image body (``curl --data-binary @x.jpg -H 'Content-Type: image/jpeg'``).
RAW_TYPES = (b"application/octet-stream",)
FILE_FIELDS = (b"file", b"image")


class UploadError(Exception):
    """A request the service must refuse; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Upload:
    name: str
    content_type: str
    data: bytes


def too_large(limit: int) -> UploadError:
    return UploadError(413, f"upload larger than the service's limit of {limit / 1e6:g} MB; send a smaller image.")


class _MultipartCollector:
    """Keeps the first file part (or a field named ``file``/``image``); other fields are dropped."""

    def __init__(self, boundary: bytes):
        self.headers: dict[bytes, bytes] = {}
        self.field = b""
        self.value = b""
        self.current = bytearray()
        self.found: Upload | None = None
        self.filename: bytes | None = None
        self.in_file = False
        callbacks = {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._append("field", data[start:end]),
            "on_header_value": lambda data, start, end: self._append("value", data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }
        self.parser = MultipartParser(boundary, callbacks)

    def _append(self, which: str, data: bytes) -> None:
        setattr(self, which, getattr(self, which) + data)

    def _part_begin(self) -> None:
        self.headers, self.current, self.in_file = {}, bytearray(), False

    def _header_end(self) -> None:
        self.headers[self.field.strip().lower()] = self.value.strip()
        self.field, self.value = b"", b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get(b"content-disposition", b""))
        self.filename = options.get(b"filename")
        self.in_file = self.found is None and (self.filename is not None or options.get(b"name") in FILE_FIELDS)

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self.in_file:
            self.current += data[start:end]

    def discard(self) -> None:
        self.current, self.found = bytearray(), None

    def _part_end(self) -> None:
        if self.in_file:
            name = (self.filename or b"upload").decode("utf-8", "replace")
            content_type = self.headers.get(b"content-type", b"").decode("latin-1")
            self.found = Upload(name, content_type, bytes(self.current))
        self.current = bytearray()

    def write(self, chunk: bytes) -> None:
        self.parser.write(chunk)

    def result(self) -> Upload:
        self.parser.finalize()
        if self.found is None:
            raise UploadError(422, "the multipart form has no file; send the image as the field 'file'.")
        return self.found


async def read_upload(headers, stream: AsyncIterator[bytes], limit: int, timeout_s: float = 60.0,
                      take: Callable[[int], None] | None = None) -> Upload:
    """The uploaded image from a multipart form (field ``file``) or a raw ``image/*`` body.

    The whole body must arrive within ``timeout_s`` (408 otherwise), so a client that stalls or
    drips bytes cannot hold a connection and its buffer open indefinitely; ``take`` draws each chunk
    from the budget all uploads share (``attnmel.serving.limits.UploadBudget``) before it is kept."""
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    content_type, options = parse_options_header(headers.get("content-type", ""))
    if content_type == b"multipart/form-data":
        boundary = options.get(b"boundary")
        if not boundary:
            raise UploadError(400, "multipart/form-data without a boundary.")
        try:
            sink = _MultipartCollector(boundary)
        except Exception as exc:  # noqa: BLE001 - python-multipart refuses e.g. a boundary above 70 bytes
            raise UploadError(400, f"malformed multipart boundary ({exc}).") from None
    elif content_type.startswith(b"image/") or content_type in RAW_TYPES:
        sink = None
    else:
        shown = content_type.decode("latin-1") or "none"
        raise UploadError(415, f"unsupported content type {shown!r}; send multipart/form-data with the image "
                               "as the field 'file', or the image itself as image/*.")
    body = bytearray()
    try:
        await _receive(stream, limit, time.monotonic() + timeout_s, timeout_s, body, sink, take)
    except BaseException:
        # free the buffers now: the exception's traceback keeps this frame (and ``body``) alive until
        # it is collected, and a stalled client's megabytes must not outlive its connection
        body.clear()
        if sink is not None:
            sink.discard()
        raise
    if sink is None:
        return Upload("upload", content_type.decode("latin-1"), bytes(body))
    try:
        return sink.result()
    except UploadError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise UploadError(400, f"malformed multipart body ({exc}).") from None


async def _receive(stream: AsyncIterator[bytes], limit: int, deadline: float, timeout_s: float, body: bytearray,
                   sink: _MultipartCollector | None, take: Callable[[int], None] | None) -> None:
    """Read the body into ``body`` (raw) or ``sink`` (multipart), within ``limit`` bytes and ``deadline``."""
    total = 0
    chunks = stream.__aiter__()
    try:
        while True:
            try:
                chunk = await asyncio.wait_for(chunks.__anext__(), max(deadline - time.monotonic(), 0.001))
            except StopAsyncIteration:
                break
            except asyncio.TimeoutError:
                raise UploadError(408, f"the upload did not arrive within {timeout_s:g} s; send it again.") from None
            total += len(chunk)
            if total > limit:
                raise too_large(limit)
            if take is not None:
                take(len(chunk))
            if sink is None:
                body += chunk
            else:
                sink.write(chunk)
    except UploadError:
        raise
    except Exception as exc:  # noqa: BLE001 - python-multipart raises its own parse errors
        raise UploadError(400, f"malformed multipart body ({exc}).") from None
