"""A corpus of bad inputs, each generated on the fly with the outcome every door must give.

A ``Case`` builds one bad (or odd) file and states what must happen to it:
- ``error``: a regex of the ``DataError`` message; the message always names the file as well.
  ``None`` means the case is *recovered* by a documented rule (README "Messy files"), and
  ``verify`` asserts the recovery on the decoded image.
- ``check_kind``: the finding ``attnmel data check`` must report for the file (``"fatal"``: the
  dataset cannot be read at all, the command exits 2 naming the file).
- ``expected_upload_status``: the HTTP status the upload door (``attnmel serve``) should answer
  when the file is posted as an image: 200 recovered, 413 too many pixels,
  415 not an image, 422 an image that cannot be used (empty, truncated, corrupt, too small).
  ``upload_cases()`` yields (name, filename, bytes, status) for wiring that door.

Targets: ``image`` (goes through data check, train, evaluate, predict, upload), ``mask`` (a lesion
mask paired with a good image: data check, train with the lesion prior) and ``labels`` (ground
truth and layout: data check, train, evaluate).
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .conftest import SAMPLE, make_isic2017_subset, subset_rows, write_csv

CASE_ID = "ISIC_9000001"
GT_HEADER = ["image_id", "melanoma", "seborrheic_keratosis"]


@dataclass(frozen=True)
class Case:
    name: str
    target: str  # "image", "mask" or "labels"
    #: image: (path) -> None; mask: (path, image size) -> None; labels: (folder) -> (dataset root, file at fault)
    build: Callable
    error: str | None = None
    check_kind: str | None = None
    suffix: str = ".jpg"
    expected_upload_status: int | None = None
    verify: Callable[[Image.Image], None] | None = None
    #: for image cases: the name the file has when given to predict (spaces, unicode...)
    filename: str | None = None

    @property
    def recovered(self) -> bool:
        return self.error is None

    def __str__(self) -> str:  # pytest ids
        return self.name


# --------------------------------------------------------------------------------------------- pixels


def _pixels(size=(64, 48), seed=0) -> np.ndarray:
    """A smooth gradient with noise: compresses like a photo, and differs per seed."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / max(w - 1, 1), y * 255 / max(h - 1, 1), (x + y) * 127 / max(w + h - 2, 1)], -1)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _writer(make: Callable[[], bytes]) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(make())


def _jpeg(seed=0, size=(64, 48)) -> bytes:
    return _encode(Image.fromarray(_pixels(size, seed)), "JPEG", quality=90)


def _png(seed=0, size=(64, 48)) -> bytes:
    return _encode(Image.fromarray(_pixels(size, seed)), "PNG")


def _png_header(width: int, height: int) -> bytes:
    """A valid PNG signature + IHDR claiming width x height, with (almost) no pixel data: the
    30000 x 30000 case costs 60 bytes, not 2.7 GB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def _jpeg_header(width: int, height: int) -> bytes:
    """A small real JPEG whose SOF0 frame header is patched to claim width x height."""
    data = bytearray(_jpeg(size=(16, 16)))
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _exif_rotated() -> bytes:
    """Stored 64 x 48, EXIF orientation 6: a viewer shows it 48 x 64, rotated 90 degrees clockwise."""
    image = Image.fromarray(_pixels((64, 48), 1))
    exif = Image.Exif()
    exif[0x0112] = 6
    return _encode(image, "JPEG", quality=95, exif=exif.tobytes())


def _palette(transparent: bool) -> bytes:
    image = Image.fromarray(_pixels((64, 48), 2)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    options = {"transparency": 0} if transparent else {}
    return _encode(image, "PNG", **options)


def _rgba() -> bytes:
    array = np.dstack([_pixels((64, 48), 3), np.full((48, 64), 255, np.uint8)])
    array[:10, :10, 3] = 0  # a fully transparent corner
    return _encode(Image.fromarray(array, "RGBA"), "PNG")


def _gray16() -> bytes:
    array = (_pixels((64, 48), 4)[..., 0].astype(np.uint16) * 257)
    array[0, 0] = 65535
    return _encode(Image.fromarray(array), "PNG")


# --------------------------------------------------------------------------------------------- recoveries


def _is_rgb(size=(64, 48)) -> Callable[[Image.Image], None]:
    def verify(image: Image.Image) -> None:
        assert image.mode == "RGB" and image.size == size, (image.mode, image.size)

    return verify


def _verify_cmyk(image: Image.Image) -> None:
    _is_rgb()(image)
    r, g, b = np.asarray(image).reshape(-1, 3).mean(0)
    assert r < 40 and g > 200 and b > 200, (r, g, b)  # pure cyan ink stays cyan


def _verify_exif(image: Image.Image) -> None:
    _is_rgb((48, 64))(image)
    stored = Image.fromarray(_pixels((64, 48), 1)).transpose(Image.Transpose.ROTATE_270)
    assert np.abs(np.asarray(image, float) - np.asarray(stored, float)).mean() < 8  # JPEG noise only


def _verify_transparent_is_white(image: Image.Image) -> None:
    _is_rgb()(image)
    assert tuple(np.asarray(image)[2, 2]) == (255, 255, 255)


def _verify_palette(image: Image.Image) -> None:
    _is_rgb()(image)
    expected = Image.open(io.BytesIO(_palette(False))).convert("RGB")
    assert np.array_equal(np.asarray(image), np.asarray(expected))


def _verify_gray(image: Image.Image) -> None:
    _is_rgb()(image)
    array = np.asarray(image)
    assert np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(array[..., 1], array[..., 2])


def _verify_16bit(image: Image.Image) -> None:
    _verify_gray(image)
    array = np.asarray(image)[..., 0]
    assert array[0, 0] == 255 and array.mean() > 40  # scaled from 16 bits, not clipped to white


# --------------------------------------------------------------------------------------------- masks


def _mask(levels: Callable[[tuple[int, int]], np.ndarray], fmt: str = "PNG", mode: str | None = None):
    def build(path: Path, size: tuple[int, int]) -> None:
        image = Image.fromarray(levels(size))
        path.write_bytes(_encode(image.convert(mode) if mode else image, fmt))

    return build


def _disc(size: tuple[int, int], inside=255, outside=0) -> np.ndarray:
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    return np.where((x - w / 2) ** 2 + (y - h / 2) ** 2 < (min(w, h) / 3) ** 2, inside, outside).astype(np.uint8)


def _soft_disc(size: tuple[int, int]) -> np.ndarray:
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    distance = np.sqrt((x - w / 2) ** 2 + (y - h / 2) ** 2) / (min(w, h) / 2)
    return np.clip(255 * (1.2 - distance), 0, 255).astype(np.uint8)


def _link_loop(path: Path, *_: object) -> None:
    """A symbolic link that points at itself: every read of it fails with ELOOP."""
    path.unlink(missing_ok=True)
    path.symlink_to(path.name)


def _truncated_mask(path: Path, size: tuple[int, int]) -> None:
    data = _encode(Image.fromarray(_disc(size)), "PNG")
    path.write_bytes(data[: len(data) // 2])


# --------------------------------------------------------------------------------------------- labels


def _subset(folder: Path, n_train: int = 4, n_val: int = 2) -> Path:
    return make_isic2017_subset(folder / "isic2017", n_train=n_train, n_val=n_val)


def _train_rows(root: Path) -> list[list[str]]:
    header, *rows = (root / "ISIC-2017_Training_Part3_GroundTruth.csv").read_text().splitlines()
    return [line.split(",") for line in rows]


def _rewrite_train_csv(transform: Callable[[list[list[str]]], list[list[str]]], header=GT_HEADER):
    def build(folder: Path) -> tuple[Path, Path]:
        root = _subset(folder)
        truth = root / "ISIC-2017_Training_Part3_GroundTruth.csv"
        write_csv(truth, header, transform(_train_rows(root)))
        return root, truth

    return build


def _raw_train_csv(encode: Callable[[str], bytes]):
    def build(folder: Path) -> tuple[Path, Path]:
        root = _subset(folder)
        truth = root / "ISIC-2017_Training_Part3_GroundTruth.csv"
        truth.write_bytes(encode(truth.read_text()))
        return root, truth

    return build


def _set_first(column: int, value: str):
    def transform(rows):
        rows[0][column] = value
        return rows

    return transform


def _unlabelled_image(folder: Path) -> tuple[Path, Path]:
    root = _subset(folder)
    stray = root / f"ISIC-2017_Training_Data/{CASE_ID}.jpg"
    stray.write_bytes(_jpeg(7))
    return root, stray


def _missing_image(folder: Path) -> tuple[Path, Path]:
    root = _subset(folder)
    first = _train_rows(root)[0][0]
    (root / f"ISIC-2017_Training_Data/{first}.jpg").unlink()
    return root, root / "ISIC-2017_Training_Part3_GroundTruth.csv"


def _same_id_twice(folder: Path) -> tuple[Path, Path]:
    root = _subset(folder)
    first = _train_rows(root)[0][0]
    twin = root / f"ISIC-2017_Training_Data/{first}.png"
    twin.write_bytes(_png(8))
    return root, twin


def _isic2016(folder: Path, rows: list[list[str]], header_row: bool = False) -> Path:
    """An ISIC 2016 layout with four sample images (header-less Part 3 CSV, as released)."""
    root = folder / "isic2016"
    data = root / "ISBI2016_ISIC_Part3_Training_Data"
    data.mkdir(parents=True)
    for row in rows:
        (data / f"{row[0]}.jpg").write_bytes((SAMPLE / f"ISIC-2017_Training_Data/{row[0]}.jpg").read_bytes())
    write_csv(root / "ISBI2016_ISIC_Part3_Training_GroundTruth.csv", ["isic_id", "label"] if header_row else None, rows)
    return root


def _isic2016_header_row(folder: Path) -> tuple[Path, Path]:
    rows = [[r["image_id"], "malignant" if r["melanoma"] == "1.0" else "benign"] for r in subset_rows("Training", 4)]
    root = _isic2016(folder, rows, header_row=True)
    return root, root / "ISBI2016_ISIC_Part3_Training_GroundTruth.csv"


def _manifest(folder: Path, rows: list[list[str]], header=("image", "label", "mask", "split")) -> Path:
    """A manifest whose images have spaces and non-ASCII characters in their paths."""
    root = folder / "my data (v2)"
    for row in rows:
        target = root / row[0]
        if not target.exists() and not row[0].startswith("missing"):
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(_jpeg(seed=len(row[0]) + sum(map(ord, row[0]))))
    return write_csv(root / "manifest.csv", list(header), rows)


_MANIFEST_ROWS = [
    ["images/lésion 01.jpg", "1", "", "train"],
    ["images/naevus 02 (copy).jpg", "0", "", "train"],
    ["images/皮肤 03.jpg", "0", "", "val"],
    ["images/Ünïcödé 04.jpg", "1", "", "val"],
]


def _manifest_case(transform: Callable[[list[list[str]]], list[list[str]]], header=("image", "label", "mask", "split"),
                   culprit: str | None = None):
    def build(folder: Path) -> tuple[Path, Path]:
        manifest = _manifest(folder, transform([list(r) for r in _MANIFEST_ROWS]), header)
        return manifest, manifest.parent / culprit if culprit else manifest

    return build


# --------------------------------------------------------------------------------------------- the corpus

_UNREADABLE = "unreadable_image"

CASES: list[Case] = [
    # images that cannot be used: an error naming the file
    Case("zero_byte_jpeg", "image", _writer(lambda: b""), r"empty \(0 bytes\)", _UNREADABLE, ".jpg", 422),
    Case("zero_byte_png", "image", _writer(lambda: b""), r"empty \(0 bytes\)", _UNREADABLE, ".png", 422),
    Case("truncated_jpeg", "image", _writer(lambda: _jpeg()[: len(_jpeg()) // 2]), "truncated", _UNREADABLE, ".jpg", 422),
    Case("truncated_png", "image", _writer(lambda: _png()[: len(_png()) // 2]), "truncated", _UNREADABLE, ".png", 422),
    Case("text_named_jpg", "image", _writer(lambda: b"<html><body>404 Not Found</body></html>\n"),
         "not a readable image", _UNREADABLE, ".jpg", 415),
    Case("pdf_named_png", "image", _writer(lambda: b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"),
         "not a readable image", _UNREADABLE, ".png", 415),
    Case("random_bytes_jpg", "image", _writer(lambda: np.random.default_rng(5).bytes(4096)),
         "not a readable image", _UNREADABLE, ".jpg", 415),
    Case("one_pixel_png", "image", _writer(lambda: _encode(Image.new("RGB", (1, 1), (120, 80, 60)), "PNG")),
         "1x1 px; its short side is below", _UNREADABLE, ".png", 422),
    Case("header_30000x30000_png", "image", _writer(lambda: _png_header(30000, 30000)),
         "too large|above the 120 Mpx", _UNREADABLE, ".png", 413),
    Case("header_30000x30000_jpeg", "image", _writer(lambda: _jpeg_header(30000, 30000)),
         "too large|above the 120 Mpx", _UNREADABLE, ".jpg", 413),
    # odd images with a documented recovery
    Case("cmyk_jpeg", "image", _writer(lambda: _encode(Image.new("CMYK", (64, 48), (255, 0, 0, 0)), "JPEG")),
         expected_upload_status=200, verify=_verify_cmyk),
    Case("exif_rotated_jpeg", "image", _writer(_exif_rotated), expected_upload_status=200, verify=_verify_exif),
    Case("png_16bit_gray", "image", _writer(_gray16), suffix=".png", expected_upload_status=200, verify=_verify_16bit),
    Case("palette_png", "image", _writer(lambda: _palette(False)), suffix=".png", expected_upload_status=200,
         verify=_verify_palette),
    Case("palette_png_transparent", "image", _writer(lambda: _palette(True)), suffix=".png",
         expected_upload_status=200, verify=_is_rgb()),
    Case("rgba_png", "image", _writer(_rgba), suffix=".png", expected_upload_status=200,
         verify=_verify_transparent_is_white),
    Case("grayscale_alpha_png", "image",
         _writer(lambda: _encode(Image.fromarray(_pixels((64, 48), 6)).convert("LA"), "PNG")),
         suffix=".png", expected_upload_status=200, verify=_verify_gray),
    Case("grayscale_jpeg", "image", _writer(lambda: _encode(Image.fromarray(_pixels((64, 48), 6)).convert("L"), "JPEG")),
         expected_upload_status=200, verify=_verify_gray),
    Case("bilevel_png", "image", _writer(lambda: _encode(Image.fromarray(_pixels((64, 48), 9)).convert("1"), "PNG")),
         suffix=".png", expected_upload_status=200, verify=_verify_gray),
    Case("png_named_jpg", "image", _writer(lambda: _png(10)), expected_upload_status=200, verify=_is_rgb()),
    Case("gif_named_jpg", "image", _writer(lambda: _encode(Image.fromarray(_pixels((64, 48), 11)).convert("P"), "GIF")),
         expected_upload_status=200, verify=_is_rgb()),
    Case("jpeg_trailing_garbage", "image", _writer(lambda: _jpeg(12) + b"\x00garbage after the end marker" * 4),
         expected_upload_status=200, verify=_is_rgb()),
    Case("unicode_and_spaces_in_name", "image", _writer(lambda: _jpeg(13)), expected_upload_status=200,
         verify=_is_rgb(), filename="lésion 01 (copie) 皮肤.jpg"),
    # lesion masks, paired with a good image
    Case("symlink_loop_image", "image", _link_loop, "Too many levels of symbolic links", _UNREADABLE, ".jpg"),
    Case("mask_wrong_size", "mask", _mask(lambda s: _disc((s[0] // 2, s[1] // 2))), r"mask is \d+x\d+ px but its image is",
         "mask_size", ".png"),
    Case("mask_truncated", "mask", _truncated_mask, "truncated", "unreadable_mask", ".png"),
    Case("mask_symlink_loop", "mask", _link_loop, "Too many levels of symbolic links", "unreadable_mask", ".png"),
    Case("mask_zero_byte", "mask", lambda path, size: path.write_bytes(b""), r"empty \(0 bytes\)", "unreadable_mask", ".png"),
    Case("mask_not_an_image", "mask", lambda path, size: path.write_text("lesion: yes"), "not a readable mask",
         "unreadable_mask", ".png"),
    Case("mask_soft_values", "mask", _mask(_soft_disc), check_kind="non_binary_mask", suffix=".png"),
    Case("mask_jpeg_artefacts", "mask", _mask(_disc, fmt="JPEG"), check_kind="non_binary_mask", suffix=".png"),
    Case("mask_zero_one_values", "mask", _mask(lambda s: _disc(s, inside=1)), suffix=".png"),
    Case("mask_rgb", "mask", _mask(_disc, mode="RGB"), suffix=".png"),
    Case("mask_16bit", "mask", _mask(lambda s: _disc(s).astype(np.uint16) * 257), suffix=".png"),
    Case("mask_empty", "mask", _mask(lambda s: np.zeros((s[1], s[0]), np.uint8)), check_kind="empty_mask", suffix=".png"),
    # ground truth and layout
    Case("csv_missing_column", "labels",
         _rewrite_train_csv(lambda rows: [[r[0], r[2]] for r in rows], ["image_id", "seborrheic_keratosis"]),
         "missing column 'melanoma'", "fatal"),
    Case("csv_nan_label", "labels", _rewrite_train_csv(_set_first(1, "nan")), "is NaN", "bad_label"),
    Case("csv_empty_label", "labels", _rewrite_train_csv(_set_first(1, "")), "is empty", "bad_label"),
    Case("csv_out_of_range_label", "labels", _rewrite_train_csv(_set_first(1, "2.0")), r"'2.0', not 0/1", "bad_label"),
    Case("csv_duplicated_id", "labels", _rewrite_train_csv(lambda rows: rows + rows[:1]), "listed more than once",
         "duplicate_id"),
    Case("csv_id_without_image", "labels", _missing_image, "is listed but has no image file", "missing_image"),
    Case("image_without_label", "labels", _unlabelled_image, "has no label", "unlabelled_image"),
    Case("same_id_twice_in_folder", "labels", _same_id_twice, "appears twice", "duplicate_id"),
    Case("csv_latin1", "labels", _raw_train_csv(lambda text: (text + "ISIC_9000002,0.0,0.0 # lésion\n").encode("latin-1")),
         "not UTF-8", "fatal"),
    Case("csv_utf16", "labels", _raw_train_csv(lambda text: text.encode("utf-16")), "not UTF-8", "fatal"),
    Case("csv_zero_byte", "labels", _raw_train_csv(lambda text: b""), "CSV is empty", "fatal"),
    Case("csv_utf8_bom", "labels", _raw_train_csv(lambda text: b"\xef\xbb\xbf" + text.encode())),
    Case("csv_crlf_spaces_blank_lines", "labels",
         _raw_train_csv(lambda text: ("\r\n".join(" , ".join(line.split(",")) for line in text.splitlines()) + "\r\n\r\n").encode())),
    Case("isic2016_csv_with_header_row", "labels", _isic2016_header_row),
    Case("manifest_unicode_and_spaces", "labels", _manifest_case(lambda rows: rows)),
    Case("manifest_missing_label_column", "labels", _manifest_case(lambda rows: [[r[0], r[3]] for r in rows], ("image", "split")),
         "missing column 'label'", "fatal"),
    Case("manifest_label_out_of_range", "labels", _manifest_case(lambda rows: [[r[0], "3", *r[2:]] if i == 0 else r
                                                                               for i, r in enumerate(rows)]),
         r"label '3' is not one of", "bad_label"),
    Case("manifest_duplicated_id", "labels", _manifest_case(lambda rows: rows + [[rows[0][0], "1", "", "val"]]),
         "appears twice", "duplicate_id"),
    Case("manifest_missing_file", "labels",
         _manifest_case(lambda rows: rows + [["missing/ghost.jpg", "0", "", "train"]], culprit="missing/ghost.jpg"),
         "but not found", "missing_image"),
]


def cases(target: str | None = None, *, recovered: bool | None = None) -> list[Case]:
    return [c for c in CASES if (target is None or c.target == target) and (recovered is None or c.recovered == recovered)]


def upload_cases() -> Iterator[tuple[str, str, bytes, int]]:
    """(case name, filename, bytes, expected HTTP status) for the upload door (a link cannot be uploaded)."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        for case in cases("image"):
            if case.expected_upload_status is None:
                continue
            path = Path(folder) / (case.filename or f"{case.name}{case.suffix}")
            case.build(path)
            yield case.name, path.name, path.read_bytes(), case.expected_upload_status


def write_image_case(case: Case, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    case.build(path)
    return path


def dataset_with_image(case: Case, folder: Path, split: str = "Training", case_id: str = CASE_ID) -> tuple[Path, Path]:
    """A small ISIC 2017 layout with the case's image as one more labelled image of ``split``."""
    root = _subset(folder)
    image = write_image_case(case, root / f"ISIC-2017_{split}_Data/{case_id}{case.suffix}")
    truth = root / f"ISIC-2017_{split}_Part3_GroundTruth.csv"
    truth.write_text(truth.read_text() + f"{case_id},0.0,0.0\n")
    return root, image


def dataset_with_mask(case: Case, folder: Path, root: Path | None = None, nth: int = 0) -> tuple[Path, Path]:
    """A small ISIC 2017 layout whose ``nth`` training image gets the case's lesion mask."""
    root = root or _subset(folder)
    first = _train_rows(root)[nth][0]
    size = Image.open(root / f"ISIC-2017_Training_Data/{first}.jpg").size
    mask = root / f"ISIC-2017_Training_Part1_GroundTruth/{first}_segmentation.png"
    case.build(mask, size)
    return root, mask


def dataset_with_labels(case: Case, folder: Path) -> tuple[Path, Path]:
    return case.build(folder)


# --------------------------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class CheckpointCase:
    """A model checkpoint whose metadata (or weights) has been tampered with, and the words every door's
    one-line error must contain (the field at fault)."""

    name: str
    #: metadata dict -> tampered metadata (any JSON value); None leaves the metadata as it is
    tamper: Callable[[dict], object] | None
    words: str
    #: tensors -> tampered tensors
    tamper_weights: Callable[[dict], dict] | None = None

    def __str__(self) -> str:
        return self.name


def _set(path: str, value: object) -> Callable[[dict], dict]:
    def tamper(meta: dict) -> dict:
        node = meta
        *parents, last = path.split(".")
        for key in parents:
            node = node[key]
        node[last] = value
        return meta
    return tamper


def _drop(key: str) -> Callable[[dict], dict]:
    return lambda meta: {k: v for k, v in meta.items() if k != key}


def _classifier(scale: float | None = None, rows: int | None = None) -> Callable[[dict], dict]:
    def tamper(tensors: dict) -> dict:
        import torch

        weight = tensors["classifier.weight"]
        tensors["classifier.weight"] = (weight[:rows] if rows else weight * float("nan") if scale is None
                                        else weight * scale)
        if rows:
            tensors["classifier.bias"] = tensors["classifier.bias"][:rows]
        return {k: torch.as_tensor(v) for k, v in tensors.items()}
    return tamper


CHECKPOINT_CASES: list[CheckpointCase] = [
    CheckpointCase("one_class_name", _set("class_names", ["melanoma"]), "'class_names'"),
    CheckpointCase("three_class_names", _set("class_names", ["a", "b", "c"]), "'class_names'"),
    CheckpointCase("class_names_not_a_list", _set("class_names", "other,melanoma"), "'class_names'"),
    CheckpointCase("class_names_repeated", _set("class_names", ["melanoma", "melanoma"]), "'class_names'"),
    CheckpointCase("score_column_unknown", _set("score_columns", ["naevus"]), "'score_columns'"),
    CheckpointCase("score_columns_empty", _set("score_columns", []), "'score_columns'"),
    CheckpointCase("num_classes_3_for_2_outputs", _set("architecture.num_classes", 3), "class_names"),
    CheckpointCase("num_classes_a_string", _set("architecture.num_classes", "2"), "'architecture'"),
    CheckpointCase("unknown_model", _set("architecture.name", "resnet-attn"), "'architecture'"),
    CheckpointCase("unknown_backbone", _set("architecture.backbone", "resnet18"), "'architecture'"),
    CheckpointCase("option_the_model_does_not_take", _set("architecture.dropout", 0.5), "'architecture'"),
    CheckpointCase("no_architecture", _drop("architecture"), "'architecture'"),
    CheckpointCase("image_size_huge", _set("preprocessing.image_size", 100_000), "'preprocessing'"),
    CheckpointCase("image_size_zero", _set("preprocessing.image_size", 0), "'preprocessing'"),
    CheckpointCase("image_size_above_resize", _set("preprocessing.image_size", 200), "'preprocessing'"),
    CheckpointCase("resize_a_string", _set("preprocessing.resize", "72"), "'preprocessing'"),
    CheckpointCase("resize_fractional", _set("preprocessing.resize", 72.5), "'preprocessing'"),
    CheckpointCase("crop_ratio_zero", _set("preprocessing.crop_ratio", 0), "'preprocessing'"),
    CheckpointCase("crop_ratio_above_one", _set("preprocessing.crop_ratio", 2.0), "'preprocessing'"),
    CheckpointCase("crop_ratio_negative", _set("preprocessing.crop_ratio", -0.8), "'preprocessing'"),
    CheckpointCase("mean_of_two_channels", _set("preprocessing.mean", [0.5, 0.5]), "'preprocessing'"),
    CheckpointCase("std_zero", _set("preprocessing.std", [0.1, 0.0, 0.1]), "'preprocessing'"),
    CheckpointCase("std_negative", _set("preprocessing.std", [0.1, -0.1, 0.1]), "'preprocessing'"),
    CheckpointCase("mean_nan", _set("preprocessing.mean", [float("nan"), 0.5, 0.5]), "'preprocessing'"),
    CheckpointCase("no_preprocessing", _drop("preprocessing"), "'preprocessing'"),
    CheckpointCase("temperature_zero", _set("temperature", 0), "'temperature'"),
    CheckpointCase("temperature_negative", _set("temperature", -1.5), "'temperature'"),
    CheckpointCase("temperature_nan", _set("temperature", float("nan")), "'temperature'"),
    CheckpointCase("temperature_infinite", _set("temperature", float("inf")), "'temperature'"),
    CheckpointCase("temperature_a_string", _set("temperature", "hot"), "'temperature'"),
    CheckpointCase("task_empty", _set("task", ""), "'task'"),
    CheckpointCase("training_not_a_mapping", _set("training", [1, 2]), "'training'"),
    CheckpointCase("metrics_not_a_mapping", _set("metrics", "great"), "'metrics'"),
    CheckpointCase("format_from_the_future", _set("format_version", 99), "newer attnmel"),
    CheckpointCase("not_an_attnmel_format", _set("format", "keras"), "not an attnmel model checkpoint"),
    CheckpointCase("metadata_a_list", lambda meta: [meta], "not a JSON object"),
    CheckpointCase("weights_for_one_class", None, "architecture.num_classes", _classifier(rows=1)),
    CheckpointCase("weights_nan", None, "NaN or infinite", _classifier()),
]


def write_checkpoint_case(case: CheckpointCase, source: Path, target: Path) -> Path:
    """A copy of the checkpoint ``source`` with the case's tampering (the JSON header allows NaN and inf)."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(source), framework="pt") as handle:
        meta = json.loads(handle.metadata()["attnmel"])
    tensors = load_file(str(source))
    if case.tamper is not None:
        meta = case.tamper(meta)
    if case.tamper_weights is not None:
        tensors = case.tamper_weights(tensors)
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(target), metadata={"attnmel": json.dumps(meta)})
    return target
