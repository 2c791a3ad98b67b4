"""What all requests together may hold, and answers the app does not write itself.

- ``UploadBudget``: bytes of request bodies that all uploads in flight may hold together. Each
  upload's cap bounds one client; without a shared budget, 32 clients each dripping 19 MB hold
  600 MB. A chunk that would pass the budget ends its upload with 503 at once (its bytes are
  dropped), so the total stays bounded however many clients stall. When an upload ends, its bytes
  are released and, above ``TRIM_BYTES``, the C allocator is asked to give freed memory back to the
  system (glibc keeps freed large buffers in its heap otherwise, and RSS never comes down).
- ``JsonHostErrors``: Starlette's host check answers 400 in plain text; every other error of the
  service is JSON, so this one is rewritten to the same shape.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
from collections.abc import Callable, Iterator
from typing import Any

from attnmel.serving.uploads import UploadError

#: released uploads at least this large are followed by a trim of the C heap
TRIM_BYTES = 1 << 20


def _libc_function(name: str, argtypes: list, restype) -> Callable | None:
    """A glibc function by name, or None where the C library has none (musl, macOS, Windows)."""
    try:
        function = getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None
    function.argtypes, function.restype = argtypes, restype
    return function


_trim = _libc_function("malloc_trim", [ctypes.c_size_t], ctypes.c_int)
_mallopt = _libc_function("mallopt", [ctypes.c_int, ctypes.c_int], ctypes.c_int)
#: mallopt's parameter for the number of heap arenas
_M_ARENA_MAX = -8


def trim_memory() -> None:
    """glibc's ``malloc_trim(0)`` (a no-op elsewhere: other C libraries return memory on their own terms)."""
    if _trim is not None:
        _trim(0)


def limit_heap_arenas(arenas: int = 2) -> None:
    """Cap glibc's heap arenas (a no-op elsewhere). Why: each thread of the decode pool would otherwise
    get an arena of its own, and a huge upload decoded on a new thread leaves its freed pixels behind
    in that thread's arena, so the peak grew with every thread that had decoded one
    (benchmarks/RESULTS.md, "Upload memory")."""
    if _mallopt is not None:
        _mallopt(_M_ARENA_MAX, arenas)


class UploadBudget:
    """Bytes of request bodies all uploads in flight may hold (the event loop is single-threaded:
    no lock is needed)."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.used = 0

    @contextlib.contextmanager
    def hold(self) -> Iterator[Callable[[int], None]]:
        """A ``take(nbytes)`` for one upload; everything it took is released when the block ends."""
        held = 0

        def take(nbytes: int) -> None:
            nonlocal held
            if self.used + nbytes > self.capacity:
                raise UploadError(503, f"the service is already receiving {self.capacity / 1e6:g} MB of uploads, its "
                                       "limit for all uploads together; send the image again in a few seconds.")
            self.used += nbytes
            held += nbytes

        try:
            yield take
        finally:
            self.used -= held
            if held >= TRIM_BYTES:
                trim_memory()


class JsonHostErrors:
    """Pure ASGI middleware around ``TrustedHostMiddleware``: its plain-text 400 becomes JSON
    (``body()`` gives the fields every error carries)."""

    def __init__(self, app, body: Callable[[], dict[str, Any]]):
        self.app = app
        self.body = body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        held: dict[str, Any] = {}

        async def send_json(message):
            if message["type"] == "http.response.start" and message["status"] == 400 and \
                    dict(message.get("headers", [])).get(b"content-type", b"").startswith(b"text/plain"):
                held["start"] = message
                return
            if "start" in held and message["type"] == "http.response.body":
                payload = json.dumps({"error": "the Host header names no host this service answers for; use its "
                                               "own address.", "status": 400, **self.body()}).encode()
                start = held.pop("start")
                start["headers"] = [(k, v) for k, v in start.get("headers", [])
                                    if k not in (b"content-type", b"content-length")]
                start["headers"] += [(b"content-type", b"application/json"),
                                     (b"content-length", str(len(payload)).encode())]
                await send(start)
                return await send({"type": "http.response.body", "body": payload})
            await send(message)

        return await self.app(scope, receive, send_json)
