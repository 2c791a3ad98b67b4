"""The FastAPI app: ``POST /predict``, ``GET /health``, ``GET /info`` and the page at ``/``.

Every response says which model answers: JSON bodies carry ``model`` (name, backbone, where it
came from: the shipped model or a checkpoint) and a ``notice`` (research use only), and every
response (the page and errors included) carries the header ``X-Attnmel-Model``. Bad requests get a
JSON error and the process carries on:

| problem | status |
|---|---|
| body above the upload limit (default 20 MB) | 413 |
| bodies of all uploads in flight above ``upload_budget_mb`` together | 503 |
| image whose header announces more than ``max_pixels`` (decompression bomb) | 413 |
| not an image, or a content type other than multipart/form-data, image/*, application/octet-stream | 415 |
| a multipart form without a file | 422 |
| truncated or corrupt image | 422 |
| malformed multipart body or boundary | 400 |
| a Host header that is not this service's (bound to loopback: only loopback names) | 400 (JSON too) |
| request headers not complete within ``header_timeout_s`` | connection closed |
| a body not complete within ``body_timeout_s`` | 408 |

Memory per upload is bounded: the body is capped; decoding draws on a budget of ``decode_budget_mb``
of decoded pixels (estimated from each upload's header before decoding), so many small images
decode at once but a 90 Mpx 16-bit PNG decodes alone; every image is decoded at full size, as
every other door decodes it (``attnmel.data.images.as_model_rgb``).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import ipaddress
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from attnmel.checkpoints.card import render_markdown
from attnmel.data.images import MAX_PIXELS, ImageTooLargeError, NotAnImageError
from attnmel.errors import ConfigError, DataError
from attnmel.inference import load_model
from attnmel.serving.batching import DirectInference, MicroBatcher
from attnmel.serving.limits import TRIM_BYTES, JsonHostErrors, UploadBudget, limit_heap_arenas, trim_memory
from attnmel.serving.model import ServedModel
from attnmel.serving.uploads import UploadError, read_upload
from attnmel.version import __version__

STATIC = Path(str(resources.files("attnmel") / "serving" / "static"))
# The page loads nothing from elsewhere; images arrive as data: URLs.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


@dataclass
class ServiceSettings:
    #: largest request body accepted (bytes); larger uploads get 413 before they are read
    max_upload_bytes: int = 20_000_000
    #: largest image accepted (pixels, from the header, before decoding)
    max_pixels: int = MAX_PIXELS
    #: images per forward pass when requests arrive together; 1 = no batching
    max_batch: int = 16
    #: how long a batch waits for more requests (ms); 0 = take what is queued
    batch_wait_ms: float = 0.0
    #: decoded pixels (MB, estimated from each header) that may be held by uploads decoding at the same time;
    #: an image larger than this decodes alone
    decode_budget_mb: float = 256.0
    #: request bodies (MB) that all uploads in flight may hold together; beyond it an upload gets 503
    upload_budget_mb: float = 128.0
    #: seconds a client has to send its request headers, and then its whole body
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    #: Host header values accepted ("*": any). Empty: loopback names when bound to loopback, else any.
    allowed_hosts: list[str] = field(default_factory=list)

    def hosts_for(self, bind: str) -> list[str]:
        """The Host names to accept when listening on ``bind``: a page on another site that resolves
        its own name to 127.0.0.1 (DNS rebinding) must not reach a service meant for this machine."""
        if self.allowed_hosts:
            return list(self.allowed_hosts)
        return LOOPBACK_HOSTS if _is_loopback(bind) else ["*"]


LOOPBACK_HOSTS = ["localhost", "127.0.0.1", "::1", "[::1]"]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class DecodeBudget:
    """Bytes of decoded pixels that uploads decoding at the same time may hold: a reservation waits
    until it fits, and one larger than the whole budget waits until nothing else is decoding."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.used = 0
        self.changed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def reserve(self, nbytes: int):
        async with self.changed:
            await self.changed.wait_for(lambda: self.used == 0 or self.used + nbytes <= self.capacity)
            self.used += nbytes
        try:
            yield
        finally:
            if nbytes >= TRIM_BYTES:  # a large decode's freed pixels go back before the next one starts
                trim_memory()
            async with self.changed:
                self.used -= nbytes
                self.changed.notify_all()


def decoded_bytes(data: bytes) -> int:
    """What decoding an upload will hold at most, from its header alone (0 when it is no image: the
    decode then fails at once, naming the problem)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            bands = len(image.getbands())
            depth = 2 if image.mode.startswith("I;16") else 4 if image.mode in ("I", "F") else 1
            # the decoded pixels, their 8-bit RGB conversion and the model input's uint8 copy of it
            return image.width * image.height * (bands * depth + 6)
    except Exception:  # noqa: BLE001 - not an image, or a header Pillow refuses: decode says why
        return 0


class ServiceHeaders:
    """Pure ASGI middleware: which model answers, and security headers, on every response."""

    def __init__(self, app, model: str):
        self.app = app
        self.headers = [
            (b"x-attnmel-model", model.encode("ascii", "replace")),
            (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
        ]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.headers]
            await send(message)

        return await self.app(scope, receive, send_with_headers)


UPLOAD_SCHEMA = {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}, "required": ["file"]}
PREDICT_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": UPLOAD_SCHEMA},
    "image/*": {"schema": {"type": "string", "format": "binary"}},
}}}


class Service:
    """The route handlers and what they share: the model, the limits, the inference queue, counters."""

    def __init__(self, served: ServedModel, settings: ServiceSettings):
        self.served = served
        self.settings = settings
        if settings.upload_budget_mb * 1e6 < settings.max_upload_bytes:
            raise ConfigError(f"--upload-budget-mb {settings.upload_budget_mb:g} is below --max-upload-mb "
                              f"{settings.max_upload_bytes / 1e6:g}: the largest upload allowed could never be received.")
        limit_heap_arenas()
        self.budget = DecodeBudget(int(settings.decode_budget_mb * 1e6))
        self.uploads = UploadBudget(int(settings.upload_budget_mb * 1e6))
        self.inference: MicroBatcher | DirectInference
        if settings.max_batch > 1:
            self.inference = MicroBatcher(served.infer, settings.max_batch, settings.batch_wait_ms)
        else:
            self.inference = DirectInference(served.infer)
        self.stats = {"started": time.time(), "predictions": 0, "rejected": 0}

    def common(self) -> dict[str, Any]:
        return {"model": self.served.describe(), "notice": self.served.notice}

    def card(self) -> dict[str, Any]:  # the card has a "model" section of its own
        return {**self.served.card.to_dict(), "served_model": self.served.describe(), "notice": self.served.notice}

    def error(self, status: int, message: str) -> JSONResponse:
        self.stats["rejected"] += 1
        return JSONResponse({"error": message, "status": status, **self.common()}, status_code=status)

    async def http_error(self, _: Request, exc: StarletteHTTPException) -> JSONResponse:
        return self.error(exc.status_code, str(exc.detail))

    async def validation_error(self, _: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        return self.error(422, f"invalid request: {'.'.join(map(str, first.get('loc', [])))} {first.get('msg', '')}".strip())

    async def internal_error(self, _: Request, exc: Exception) -> JSONResponse:
        return self.error(500, f"internal error ({type(exc).__name__}); the service is still running.")

    async def page(self) -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    async def health(self) -> dict[str, Any]:
        stats = self.stats
        return {"status": "ok", **self.common(), "uptime_s": round(time.time() - stats["started"], 1),
                "predictions": stats["predictions"], "rejected": stats["rejected"], "inference": self.inference.describe()}

    async def info(self) -> dict[str, Any]:
        """The model card as JSON (``markdown``: the same card rendered), plus the service's limits."""
        return {**self.card(), "markdown": render_markdown(self.served.card),
                "service": {"max_upload_bytes": self.settings.max_upload_bytes, "max_pixels": self.settings.max_pixels,
                            **self.inference.describe()}}

    async def predict(self, request: Request, images: bool = True, figure: bool = False) -> JSONResponse:
        """Class probabilities and, per attention layer, the map (numbers) and overlay PNGs.

        ``images=false`` leaves out the PNGs (``view_png``, ``overlay_png``, ``heatmap_png``).
        """
        settings, served = self.settings, self.served
        try:
            with self.uploads.hold() as take:
                upload = await read_upload(request.headers, request.stream(), settings.max_upload_bytes,
                                           settings.body_timeout_s, take)
                async with self.budget.reserve(decoded_bytes(upload.data)):
                    prepared = await run_in_threadpool(served.prepare, upload.data, upload.name, settings.max_pixels)
                del upload  # the body is freed before the hold ends (and trims the heap)
        except UploadError as exc:
            return self.error(exc.status, exc.message)
        except NotAnImageError as exc:
            return self.error(415, f"{exc.problem} Send a JPEG or PNG dermoscopy image.")
        except ImageTooLargeError as exc:
            return self.error(413, exc.problem)
        except DataError as exc:
            return self.error(422, exc.problem)
        result = await self.inference(prepared.tensor)
        body = await run_in_threadpool(served.response, prepared, result, images, figure)
        self.stats["predictions"] += 1
        return JSONResponse({**self.common(), **body})


def create_app(served: ServedModel, settings: ServiceSettings | None = None, bind: str = "127.0.0.1") -> FastAPI:
    service = Service(served, settings or ServiceSettings())

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        service.inference.close()

    app = FastAPI(
        title="attnmel",
        version=__version__,
        description="Melanoma probability and where the model looked (research use only, not a diagnostic tool).",
        docs_url=None,  # Swagger UI would load from a CDN; /openapi.json is served
        redoc_url=None,
        lifespan=lifespan,
    )
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=service.settings.hosts_for(bind))
    app.add_middleware(JsonHostErrors, body=service.common)
    app.add_middleware(ServiceHeaders, model=served.card.title)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_exception_handler(StarletteHTTPException, service.http_error)
    app.add_exception_handler(RequestValidationError, service.validation_error)
    app.add_exception_handler(Exception, service.internal_error)
    app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)(service.page)
    app.api_route("/health", methods=["GET", "HEAD"])(service.health)
    app.get("/info")(service.info)
    app.post("/predict", openapi_extra=PREDICT_BODY)(service.predict)
    return app


def serve(
    checkpoint: str | Path | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    settings: ServiceSettings | None = None,
    trust_pickle: bool = False,
    device: str = "auto",
    access_log: bool = True,
    log=print,
) -> None:
    """Load the model (the shipped model without ``checkpoint``), check that it answers, and run the
    service with uvicorn."""
    import uvicorn

    from attnmel.serving.protocol import header_timeout_protocol

    settings = settings or ServiceSettings()
    served = ServedModel.of(load_model(checkpoint, device=device, trust_pickle=trust_pickle), checkpoint, log)
    app = create_app(served, settings, bind=host)
    described = served.describe()
    log(f"serving {described['name']} ({described['backbone']}) from {served.source} at http://{host}:{port}/")
    log(served.notice)
    uvicorn.run(app, host=host, port=port, access_log=access_log, log_level="info",
                http=header_timeout_protocol(settings.header_timeout_s), timeout_keep_alive=5)
