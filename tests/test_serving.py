"""The HTTP service: responses, which model answers, limits and bad input (FastAPI's TestClient, and
real ``attnmel serve`` processes on loopback)."""

from __future__ import annotations

import base64
import io
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import httpx
import numpy as np
import pytest
import starlette.formparsers
import torch
from fastapi.testclient import TestClient
from PIL import Image

from attnmel.inference import InferenceSettings, load_model
from attnmel.predict import predict_images
from attnmel.serving import ServedModel, ServiceSettings, create_app
from attnmel.serving.batching import MicroBatcher

from .conftest import REPO, SAMPLE


@pytest.fixture(scope="module")
def served(tiny_checkpoint) -> ServedModel:
    return ServedModel.of(load_model(tiny_checkpoint, device="cpu"), tiny_checkpoint)


@pytest.fixture
def client(served):
    with TestClient(create_app(served, ServiceSettings(max_upload_bytes=4_000_000)), base_url="http://localhost") as test_client:
        yield test_client


@pytest.fixture(scope="module")
def lesion() -> Path:
    """A real ISIC 2017 validation image from the bundled sample."""
    return sorted((SAMPLE / "ISIC-2017_Validation_Data").glob("*.jpg"))[0]


def upload(path: Path):
    return {"file": (path.name, path.read_bytes(), "image/jpeg")}


def decode_png(data_url: str) -> Image.Image:
    assert data_url.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1])))


def png_claiming(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header claims ``width`` x ``height`` (a decompression-bomb header)."""
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr : ihdr + 17])))
    return bytes(data)


def test_predict_returns_probabilities_maps_and_overlays(client, tiny_checkpoint, lesion):
    response = client.post("/predict?figure=true", files=upload(lesion))
    assert response.status_code == 200, response.text
    assert response.headers["x-attnmel-model"].startswith("AttnMel-CNN-Lesion (mobilenet_v2)")
    body = response.json()
    assert body["model"]["source"] == f"{tiny_checkpoint.parent.name}/{tiny_checkpoint.name}"  # not the absolute path
    assert body["model"]["pretrained"] is None
    assert "not a diagnostic tool" in body["notice"]
    assert set(body["probabilities"]) == {"other", "melanoma"}
    assert sum(body["probabilities"].values()) == pytest.approx(1, abs=1e-6)
    assert body["input"] == dict(zip(("width", "height"), Image.open(lesion).size, strict=True))
    assert decode_png(body["view_png"]).size == (64, 64)
    assert set(body["attention"]) == {"stage3", "stage4"}
    # the service shows what `attnmel predict` computes
    reference = predict_images(tiny_checkpoint, lesion, settings=InferenceSettings(device="cpu", batch_size=16)).results[0].prediction
    for name, p in reference.probabilities.items():
        assert body["probabilities"][name] == pytest.approx(p, abs=1e-5)
    for layer, entry in body["attention"].items():
        raw = np.array(entry["raw"])
        assert list(raw.shape) == entry["shape"] == list(reference.raw_attention[layer].shape)
        np.testing.assert_allclose(raw, reference.raw_attention[layer], rtol=1e-5, atol=1e-6)
        assert (entry["min"], entry["max"]) == pytest.approx((raw.min(), raw.max()), abs=1e-5)
        assert entry["kind"] == "probability" and entry["flat"] == bool(raw.max() - raw.min() < body["flat_epsilon"])
        assert decode_png(entry["overlay_png"]).size == (64, 64)
        assert decode_png(entry["heatmap_png"]).mode == "RGBA"
    figure = decode_png(body["figure_png"])
    assert figure.size[0] > 2.5 * figure.size[1]  # the view and two maps side by side


def test_the_service_answers_with_the_library_prediction_serialised_the_same_way(client, served, lesion):
    body = client.post("/predict?images=false", files=upload(lesion)).json()
    library = served.loaded.predict(str(lesion)).to_dict(values=True)
    assert set(library) <= set(body) and set(body) - set(library) == {"input", "model", "notice"}
    assert body["source"] == lesion.name and library["source"] == str(lesion)
    for key in set(library) - {"source", "probabilities", "attention"}:
        assert body[key] == library[key], key
    assert body["probabilities"] == pytest.approx(library["probabilities"], abs=1e-6)
    for layer, entry in library["attention"].items():
        served_entry = body["attention"][layer]
        assert set(served_entry) == set(entry)
        assert {k: served_entry[k] for k in ("shape", "kind", "flat")} == {k: entry[k] for k in ("shape", "kind", "flat")}
        np.testing.assert_allclose(served_entry["raw"], entry["raw"], rtol=1e-5, atol=1e-6)


def test_raw_image_body_and_numbers_only(client, lesion):
    response = client.post("/predict?images=false", content=lesion.read_bytes(), headers={"content-type": "image/jpeg"})
    assert response.status_code == 200
    body = response.json()
    assert "view_png" not in body and all("overlay_png" not in e for e in body["attention"].values())
    assert body["attention"]["stage3"]["shape"] == [8, 8]


def test_health_info_and_page(client):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["model"]["name"] == "attnmel"
    info = client.get("/info")
    assert "NaN" not in info.text  # strict JSON
    card = info.json()
    assert card["model"]["attention_layers"] == ["stage3", "stage4"] and card["served_model"]["name"] == "attnmel"
    assert "not for diagnosis" in card["intended_use"]["primary"] and card["limitations"]
    assert card["training"]["data"]["train"]["images"] == 8 and "roc_auc" in card["metrics"]["positive_class"]
    assert card["markdown"].startswith("# Model card") and card["service"]["max_upload_bytes"] == 4_000_000
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="file-input"' in page.text and "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200
        assert "://" not in client.get(asset).text  # nothing loaded from elsewhere: works offline
    assert "://" not in page.text
    missing = client.get("/nowhere")
    assert missing.status_code == 404 and missing.json()["model"]["name"] == "attnmel"


@pytest.fixture
def no_temporary_files(monkeypatch):
    """Fail if anything creates a temporary file or folder while the test runs."""

    def forbidden(*args, **kwargs):
        raise AssertionError("uploaded data must not be written to disk")

    for name in ("TemporaryFile", "NamedTemporaryFile", "SpooledTemporaryFile", "mkstemp", "mkdtemp"):
        monkeypatch.setattr(tempfile, name, forbidden)
    monkeypatch.setattr(starlette.formparsers, "SpooledTemporaryFile", forbidden)


def test_bad_requests_get_json_errors_and_the_service_carries_on(client, lesion, no_temporary_files):
    good = upload(lesion)
    truncated = lesion.read_bytes()[: lesion.stat().st_size // 2]
    cases = [
        # (what, request kwargs, expected status, words in the error)
        ("too large, declared", {"files": {"file": ("big.jpg", b"\xff" * 4_100_000, "image/jpeg")}}, 413, "limit"),
        ("too large, chunked", {"content": (b"\xff" * 500_000 for _ in range(10)),
                                "headers": {"content-type": "image/jpeg"}}, 413, "limit"),
        ("not an image", {"files": {"file": ("notes.txt", b"just some text", "text/plain")}}, 415, "not a readable image"),
        ("wrong content type", {"content": b"{}", "headers": {"content-type": "application/json"}}, 415, "content type"),
        ("bomb header", {"files": {"file": ("bomb.png", png_claiming(30000, 30000), "image/png")}}, 413, "too large"),
        ("truncated", {"files": {"file": ("cut.jpg", truncated, "image/jpeg")}}, 422, "truncated"),
        ("empty", {"files": {"file": ("empty.jpg", b"", "image/jpeg")}}, 422, "empty"),
        ("no file", {"data": {"note": "hello"}, "files": {"other": ("", b"", "text/plain")}}, 422, "no file"),
    ]
    for what, kwargs, status, words in cases:
        response = client.post("/predict", **kwargs)
        assert response.status_code == status, (what, response.text)
        body = response.json()
        assert words in body["error"] and body["status"] == status and "model" in body, what
        after = client.post("/predict", files=good)
        assert after.status_code == 200, f"after {what}: {after.text}"
    big = io.BytesIO()  # 3 MB, beyond Starlette's 1 MB spool-to-disk threshold, within the limit
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (1000, 1000, 3), dtype=np.uint8)).save(big, format="PNG")
    assert big.tell() > 2_000_000
    assert client.post("/predict", files={"file": ("big.png", big.getvalue(), "image/png")}).status_code == 200
    assert client.get("/health").json()["rejected"] >= len(cases)


def test_pixel_limit_is_configurable(served, lesion):
    with TestClient(create_app(served, ServiceSettings(max_pixels=10_000)), base_url="http://localhost") as small:
        response = small.post("/predict", files=upload(lesion))
    assert response.status_code == 413 and "0.01 Mpx" in response.json()["error"]


def test_micro_batcher_matches_single_image_inference(served, sample_data):
    paths = sorted((sample_data / "ISIC-2017_Validation_Data").glob("*.jpg"))[:6]
    tensors = [served.prepare(p.read_bytes()).tensor for p in paths]
    batcher = MicroBatcher(served.infer, max_batch=8, max_wait_ms=500)
    try:
        futures = [batcher.submit(t) for t in tensors]
        results = [f.result(timeout=120) for f in futures]
    finally:
        batcher.close()
    assert batcher.batches == 1 and batcher.images == 6
    for tensor, (probabilities, maps, _) in zip(tensors, results, strict=True):
        single_probabilities, single_maps, _ = served.infer(tensor[None])[0]
        np.testing.assert_allclose(probabilities, single_probabilities, atol=1e-5)
        for layer in maps:
            np.testing.assert_allclose(maps[layer], single_maps[layer], atol=1e-5)


def test_micro_batcher_reports_failures_and_keeps_running():
    calls = []

    def flaky(batch: torch.Tensor):
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return [float(x.sum()) for x in batch]

    batcher = MicroBatcher(flaky, max_batch=4)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            batcher.submit(torch.ones(2)).result(timeout=10)
        assert batcher.submit(torch.ones(3)).result(timeout=10) == 3.0
    finally:
        batcher.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_real_server_process_survives_bad_requests(tiny_checkpoint, lesion, tmp_path):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "attnmel", "serve", "--checkpoint", str(tiny_checkpoint), "--port", str(port),
               "--max-upload-mb", "1", "--no-access-log"]
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, (tmp_path / "server.log").read_text()
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start within 180 s"
            time.sleep(0.5)
        with httpx.Client(base_url=base, timeout=60) as http:
            assert http.post("/predict", files={"file": ("big.jpg", b"\0" * 2_000_000, "image/jpeg")}).status_code == 413
            assert http.post("/predict", files={"file": ("x.txt", b"text", "text/plain")}).status_code == 415
            assert http.post("/predict", files={"file": ("b.png", png_claiming(30000, 30000), "image/png")}).status_code == 413
            response = http.post("/predict", files=upload(lesion))
            assert response.status_code == 200 and response.headers["x-attnmel-model"]
        assert process.poll() is None
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def test_bad_input_corpus_through_the_upload_door(client, lesion):
    """Every image case of the bad-input corpus (tests/corpus.py) gets its documented status, with a
    JSON error for refusals, and the service keeps answering good requests after each one."""
    from .corpus import upload_cases

    seen = 0
    for name, filename, data, expected in upload_cases():
        response = client.post("/predict", files={"file": (filename, data, "application/octet-stream")})
        assert response.status_code == expected, f"{name}: {response.status_code} {response.text[:200]}"
        if expected != 200:
            assert "error" in response.json(), name
        assert client.post("/predict?images=false", files=upload(lesion)).status_code == 200, f"down after {name}"
        seen += 1
    assert seen >= 20


def test_only_loopback_host_names_reach_a_service_bound_to_loopback(served, lesion):
    """A page elsewhere that resolves its own name to 127.0.0.1 (DNS rebinding) is refused."""
    app = create_app(served, bind="127.0.0.1")
    for host, status in (("localhost", 200), ("127.0.0.1:8000", 200), ("evil.example", 400)):
        with TestClient(app, base_url=f"http://{host}") as http:
            assert http.get("/health").status_code == status, host
    with TestClient(create_app(served, bind="0.0.0.0"), base_url="http://clinic.example") as http:
        assert http.get("/health").status_code == 200
    with TestClient(create_app(served, ServiceSettings(allowed_hosts=["clinic.example"]), bind="127.0.0.1"),
                    base_url="http://clinic.example") as http:
        assert http.get("/health").status_code == 200


def test_a_boundary_longer_than_the_parser_allows_is_a_400(client):
    from python_multipart.multipart import MAX_BOUNDARY_LENGTH

    boundary = "b" * (MAX_BOUNDARY_LENGTH + 1)
    body = f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.jpg\"\r\n\r\nxx\r\n--{boundary}--\r\n"
    response = client.post("/predict", content=body.encode(),
                           headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 400 and "boundary" in response.json()["error"]


def test_a_body_that_does_not_arrive_in_time_is_a_408(served):
    import asyncio

    from attnmel.serving.uploads import UploadError, read_upload

    async def stalled():
        yield b"\xff\xd8"
        await asyncio.sleep(30)
        yield b"never"

    with pytest.raises(UploadError) as info:
        asyncio.run(read_upload({"content-type": "image/jpeg"}, stalled(), 10_000, timeout_s=0.2))
    assert info.value.status == 408


def test_a_model_that_answers_nan_refuses_to_start(tiny_checkpoint, tmp_path, capsys):
    """Finite weights that still overflow to NaN: the service checks the model once before it starts."""
    from attnmel.checkpoints.format import save_model_checkpoint
    from attnmel.cli import main

    from .checkpoint_helpers import network_of

    model, meta = network_of(tiny_checkpoint)
    with torch.no_grad():
        model.classifier.weight.fill_(3e38)
    broken = save_model_checkpoint(tmp_path / "broken.safetensors", model, meta)
    with pytest.raises(Exception, match="NaN or infinite outputs"):
        ServedModel.of(load_model(broken, device="cpu"), broken)
    assert main(["serve", "--checkpoint", str(broken), "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "NaN or infinite" in err and "Traceback" not in err


@pytest.mark.slow
def test_a_connection_that_never_sends_its_headers_is_closed(tiny_checkpoint, tmp_path):
    """uvicorn alone keeps such a connection open for good; the service closes it after its deadline."""
    from attnmel.serving.app import serve

    port = free_port()
    code = (f"from attnmel.serving.app import ServiceSettings, serve\n"
            f"serve({str(tiny_checkpoint)!r}, port={port}, settings=ServiceSettings(header_timeout_s=1.0), "
            f"device='cpu', access_log=False)")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert serve  # the function the child runs
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.5)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: localhost\r\n")  # and then nothing
            started = time.monotonic()
            assert sock.recv(1024) == b""  # closed by the server
            assert time.monotonic() - started < 8
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_decode_budget_lets_small_images_share_it_and_a_huge_one_decode_alone():
    import asyncio

    from attnmel.serving.app import DecodeBudget, decoded_bytes

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((300, 200), dtype=np.uint16)).save(buffer, format="PNG")
    # the 16-bit pixels, their 8-bit RGB conversion and the model input's copy of it
    assert decoded_bytes(buffer.getvalue()) == 300 * 200 * (2 + 6) and decoded_bytes(b"not an image") == 0

    async def scenario():
        budget, log = DecodeBudget(100), []

        async def decode(name, nbytes, hold):
            async with budget.reserve(nbytes):
                log.append(("start", name, budget.used))
                await asyncio.sleep(hold)
            log.append(("end", name))

        await asyncio.gather(decode("a", 40, 0.05), decode("b", 40, 0.05), decode("huge", 500, 0.05),
                             decode("c", 40, 0.05))
        return log

    log = asyncio.run(scenario())
    starts = {name: used for event, name, *rest in log if event == "start" for used in rest}
    assert starts["a"] == 40 and starts["b"] == 80  # small ones share the budget
    assert starts["huge"] == 500  # the huge one waited until nothing else was decoding
    assert log.index(("start", "huge", 500)) > max(log.index(("end", n)) for n in ("a", "b"))
