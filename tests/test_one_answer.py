"""One picture, one answer, by every door (issue 20).

A corpus of real ISIC 2017 val images written in every mode and size a user meets (8-bit RGB JPEG
small and large, EXIF-rotated, 16-bit gray PNG, RGBA with a transparent corner, palette, float TIFF,
gray) goes through every door: path, bytes (the service's decode), PIL as opened, an RGB array, a
tensor, an HTTP upload and the ONNX view (``attnmel.export.onnx_view`` fed to the graph's PyTorch
twin, ``ExportView``; ONNX Runtime equals it to 1e-4, tests/test_export.py). The rule: the same view
within 1 grey level and P(melanoma) within 0.01 of the path's, and maps and ``view_box`` in the
coordinates of the image as displayed (EXIF applied).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from attnmel.data.images import read_image
from attnmel.errors import DataError

from .conftest import ISIC2017
from .corpus import cases as corpus_cases
from .corpus import write_image_case

VAL = ISIC2017 / "ISIC-2017_Validation_Data"
#: P(melanoma) and pixel tolerances of the rule
P_TOLERANCE, GREY_TOLERANCE = 0.01, 1


def _real(index: int, size: tuple[int, int] | None = None) -> Image.Image:
    files = sorted(VAL.glob("*.jpg"))
    image = Image.open(files[index]).convert("RGB")
    return image.resize(size, Image.BICUBIC) if size else image


def _exif_rotated(path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait
    _real(1, (1200, 800)).save(path, quality=92, exif=exif.tobytes())


def _gray16(path: Path) -> None:
    gray = np.asarray(_real(2, (900, 600)).convert("L"), dtype=np.uint16) * 257
    Image.fromarray(gray).save(path)


def _rgba(path: Path) -> None:
    array = np.dstack([np.asarray(_real(3, (700, 500))), np.full((500, 700), 255, np.uint8)])
    array[200:260, :, 3] = 0  # a transparent band and a half-transparent one across the centre
    array[300:330, :, 3] = 128
    Image.fromarray(array, "RGBA").save(path)


def _palette(path: Path) -> None:
    _real(4, (640, 480)).convert("P", palette=Image.Palette.ADAPTIVE, colors=200).save(path)


def _float_tiff(path: Path) -> None:
    gray = np.asarray(_real(5, (600, 400)).convert("L"), dtype=np.float32) / 255.0
    Image.fromarray(gray, mode="F").save(path)


#: name -> writer; the large JPEGs are the sizes the issue reproduced with
CORPUS = {
    "small.jpg": lambda p: _real(0).save(p, quality=95),
    "large-3000.jpg": lambda p: _real(0, (3000, 2004)).save(p, quality=92),
    "large-4000.jpg": lambda p: _real(6, (4000, 2672)).save(p, quality=92),
    "exif-rotated.jpg": _exif_rotated,
    "gray16.png": _gray16,
    "rgba.png": _rgba,
    "palette.png": _palette,
    "float.tif": _float_tiff,
    "gray.png": lambda p: _real(7, (500, 400)).convert("L").save(p),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    if not VAL.is_dir():
        pytest.skip(f"ISIC 2017 val images not found at {VAL}")
    folder = tmp_path_factory.mktemp("one-answer")
    paths = {}
    for name, write in CORPUS.items():
        write(folder / name)
        paths[name] = folder / name
    return paths


@pytest.fixture(scope="module")
def model():
    import attnmel

    return attnmel.load_model(device="cpu")


def _doors(model, path: Path) -> dict[str, object]:
    """Every in-process door's Prediction for one file (the HTTP door has its own test)."""
    decoded = np.asarray(read_image(path))
    served = _served(model)
    prepared = served.prepare(path.read_bytes(), path.name)
    probabilities, maps, _ = served.infer(prepared.tensor[None])[0]
    return {
        "path": model.predict(str(path)),
        "PIL as opened": model.predict(Image.open(path)),
        "array": model.predict(decoded),
        "tensor": model.predict(torch.from_numpy(decoded.copy()).permute(2, 0, 1)),
        "bytes": (float(probabilities[list(model.class_names).index("melanoma")]), prepared),
    }


_SERVED = {}


def _served(model):
    from attnmel.serving.model import ServedModel

    if "it" not in _SERVED:
        _SERVED["it"] = ServedModel(model, "the shipped model")
    return _SERVED["it"]


@pytest.mark.parametrize("name", list(CORPUS))
def test_every_in_process_door_gives_the_paths_answer(corpus, model, name):
    path = corpus[name]
    doors = _doors(model, path)
    reference = doors.pop("path")
    bytes_p, prepared = doors.pop("bytes")
    served_view = torch.clamp(prepared.tensor * torch.tensor(model.preprocessing.std).view(3, 1, 1)
                              + torch.tensor(model.preprocessing.mean).view(3, 1, 1), 0, 1) * 255
    assert np.abs(served_view.round().permute(1, 2, 0).numpy() - reference.view).max() <= GREY_TOLERANCE
    assert abs(bytes_p - reference.probability) < P_TOLERANCE, (name, "bytes", bytes_p, reference.probability)
    assert (prepared.width, prepared.height) == reference.image_size
    for door, result in doors.items():
        difference = np.abs(result.view.astype(int) - reference.view.astype(int)).max()
        assert difference <= GREY_TOLERANCE, (name, door, difference)
        assert abs(result.probability - reference.probability) < P_TOLERANCE, (name, door, result.probability,
                                                                              reference.probability)
        assert result.image_size == reference.image_size and result.view_box == reference.view_box, (name, door)


@pytest.mark.parametrize("name", list(CORPUS))
def test_the_onnx_view_gives_attnmels_answer(corpus, model, name):
    from attnmel.export import ExportView, onnx_view

    path = corpus[name]
    reference = model.predict(str(path))
    pre = model.preprocessing
    views = {"path": onnx_view(path, pre.crop_ratio, pre.resize, pre.image_size),
             "PIL": onnx_view(Image.open(path), pre.crop_ratio, pre.resize, pre.image_size)}
    graph = ExportView(model.predictor.models[0], model.meta).eval()
    for door, view in views.items():
        difference = np.abs(view.astype(int) - reference.view.astype(int)).max()
        assert difference <= GREY_TOLERANCE, (name, door, difference)
        with torch.no_grad():
            probability = float(graph(torch.from_numpy(view)[None])[0][0, model.meta.positive_index])
        assert abs(probability - reference.probability) < P_TOLERANCE, (name, door, probability, reference.probability)


def test_maps_and_view_box_are_in_the_displayed_images_coordinates(corpus, model):
    """A 4000 x 2672 JPEG: maps are 2672 x 4000, not the reduced decode's; an EXIF-rotated file's
    maps are portrait, as a viewer shows it."""
    large = model.predict(str(corpus["large-4000.jpg"]))
    assert large.image_size == (4000, 2672)
    assert all(amap.shape == (2672, 4000) for amap in large.attention.values())
    left, top, right, bottom = large.view_box
    assert 0 <= left < right <= 4000 and 0 <= top < bottom <= 2672 and right - left > 1500
    rotated = model.predict(str(corpus["exif-rotated.jpg"]))
    assert rotated.image_size == (800, 1200)
    assert all(amap.shape == (1200, 800) for amap in rotated.attention.values())


def test_an_http_upload_gives_the_paths_answer(corpus, model):
    from fastapi.testclient import TestClient

    from attnmel.serving.app import create_app

    client = TestClient(create_app(_served(model)), base_url="http://localhost")
    for name in ("large-3000.jpg", "exif-rotated.jpg", "rgba.png", "gray16.png"):
        path = corpus[name]
        reference = model.predict(str(path))
        response = client.post("/predict?images=false", files={"file": (name, path.read_bytes(), "image/png")})
        assert response.status_code == 200, response.text
        body = response.json()
        # a flagged image is withheld by both doors alike; its OOD score still gives the same answer
        assert body["withheld"] == reference.withheld, name
        if reference.ood_score is not None:
            assert abs(body["ood_score"] - reference.ood_score) < 0.05 * max(1.0, abs(reference.ood_score)), name
        if reference.withheld is None:
            assert abs(body["probabilities"]["melanoma"] - reference.probability) < P_TOLERANCE, name
        else:
            assert body["probabilities"] is None and body["predicted_class"] is None, name
        assert (body["input"]["width"], body["input"]["height"]) == reference.image_size, name


def test_a_tiny_array_is_refused_like_a_tiny_file(model, tmp_path):
    """A 3x3 file is refused; a 3x3 array, tensor or PIL image must be too (one rule, one message)."""
    tiny = np.zeros((3, 3, 3), np.uint8)
    Image.fromarray(tiny).save(tmp_path / "tiny.png")
    for item in (str(tmp_path / "tiny.png"), tiny, torch.zeros(3, 3, 3, dtype=torch.uint8), Image.fromarray(tiny)):
        with pytest.raises(DataError, match="short side is below"):
            model.predict(item)


def test_a_float_image_in_0_1_is_not_read_as_black(tmp_path):
    gray = np.linspace(0, 1, 64 * 48, dtype=np.float32).reshape(48, 64)
    Image.fromarray(gray, mode="F").save(tmp_path / "float.tif")
    image = np.asarray(read_image(tmp_path / "float.tif"))
    assert image.max() == 255 and image.min() == 0


def test_bytes_from_memory_decode_as_the_file(corpus):
    from attnmel.data.images import read_image_bytes

    for name in ("large-4000.jpg", "gray16.png", "float.tif"):
        data = corpus[name].read_bytes()
        assert np.array_equal(np.asarray(read_image_bytes(data, name)), np.asarray(read_image(corpus[name])))


@pytest.mark.parametrize("case", corpus_cases("image", recovered=True), ids=str)
def test_every_recovered_corpus_file_gives_one_answer_by_every_door(case, model, tmp_path):
    """The bad-input corpus's recovered files (CMYK, bilevel, LA, palette with transparency, GIF named
    .jpg, ...) through path, bytes, PIL as opened and the decoded array: one view, one answer."""
    path = write_image_case(case, tmp_path / (case.filename or f"{case.name}{case.suffix}"))
    reference = model.predict(str(path))
    served = _served(model)
    prepared = served.prepare(path.read_bytes(), path.name)
    bytes_p = served.infer(prepared.tensor[None])[0][0][model.meta.positive_index]
    assert abs(float(bytes_p) - reference.probability) < P_TOLERANCE
    for door, item in (("PIL as opened", Image.open(path)), ("array", np.asarray(read_image(path)))):
        result = model.predict(item)
        assert np.abs(result.view.astype(int) - reference.view.astype(int)).max() <= GREY_TOLERANCE, (case, door)
        assert abs(result.probability - reference.probability) < P_TOLERANCE, (case, door)


def _odd_sized_writers() -> dict[str, object]:
    """Sizes whose centre square has odd margins (the crop's rounding) in the modes converted per pixel."""
    rng = np.random.default_rng(0)
    wide = rng.integers(0, 65535, (603, 901), dtype=np.uint16)
    return {
        "odd-gray16.png": lambda p: Image.fromarray(wide).save(p),
        "odd-int32.tif": lambda p: Image.fromarray((wide.astype(np.int32) * 3), mode="I").save(p),
        "odd-float-0-255.tif": lambda p: Image.fromarray((wide / 257).astype(np.float32), mode="F").save(p),
        "odd-cmyk.jpg": lambda p: _real(8, (777, 555)).convert("CMYK").save(p, quality=95),
        "odd-la.png": lambda p: _real(9, (555, 777)).convert("LA").save(p),
    }


def test_the_services_centre_square_is_the_full_decodes_model_input(corpus, model, tmp_path):
    """The service converts only the centre square (memory); its model input must be, to the bit, the
    full-size decode's through the model's preprocessing, for every mode and odd margins too."""
    from attnmel.data.images import read_image_bytes

    paths = dict(corpus)
    for name, write in _odd_sized_writers().items():
        write(tmp_path / name)
        paths[name] = tmp_path / name
    for name, path in paths.items():
        data = path.read_bytes()
        full = read_image_bytes(data, name)
        prepared = _served(model).prepare(data, name)
        assert torch.equal(prepared.tensor, model.preprocessing(full)), name
        assert (prepared.width, prepared.height) == full.size, name
