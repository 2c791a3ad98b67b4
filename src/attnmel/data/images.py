"""Decoding images and masks, with every failure turned into a ``DataError`` that names the file.

What real archives contain and how each case is handled (documented in the README):
- grayscale, palette, RGBA/LA, CMYK, 16-bit and float images are converted to 8-bit RGB
  (alpha is composited on white; 16-bit values are scaled, not clipped);
- EXIF orientation is applied, so what the model sees is what a viewer shows;
- zero-byte, truncated and non-image files raise an error; so do images above ``MAX_PIXELS``,
  checked from the header before any pixel is decoded (decompression bombs; Pillow's own,
  different limit is switched off so that this one is the only cap), and images whose short side
  is below ``MIN_SIDE``;
- every door (path, bytes, PIL image, array, tensor, HTTP upload) decodes at full size through one
  function, ``as_model_rgb``: a reduced decode (JPEG DCT scaling, or a box reduction) moved the
  model's view by many grey levels and P(melanoma) by far more than 0.01 on large ISIC images
  (benchmarks/RESULTS.md, "One decode for every door"), so it is done nowhere; 16-bit and float
  pixels are scaled in row blocks, so no full-size float copy is made;
- a file's content decides its format, not its extension (a PNG named ``.jpg`` is read as PNG).
Masks: any mode is reduced to one channel and binarised at 128 (``>= 128`` is lesion), so
anti-aliased or 0/1-valued masks work; a mask whose size differs from its image is an error.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from attnmel.data.hdf5 import hdf5_entry, read_entry
from attnmel.errors import DataError

#: Largest image accepted (pixels): an ISIC original is at most 6688 x 4439 (30 Mpx).
MAX_PIXELS = 120_000_000
# attnmel checks MAX_PIXELS (or a caller's lower limit) from the header itself, before decoding. Pillow's
# own decompression-bomb threshold (89.5 Mpx by default) would be a second, undocumented cap below it:
# it is raised to ours (Pillow still refuses twice that on its own, for any other code in the process).
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
#: Smallest image side accepted: below it no lesion detail survives, and the 0.8 centre crop of the
#: preprocessing would be empty for a 1 px image.
MIN_SIDE = 16
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class NotAnImageError(DataError):
    """The bytes are no image format Pillow knows (the HTTP service answers 415)."""


class ImageTooLargeError(DataError):
    """The header announces more pixels than is safe to decode (the HTTP service answers 413)."""


def _open(path: Path, what: str) -> Image.Image:
    if hdf5_entry(path) is not None:  # an image stored inside an HDF5 file (ISIC 2024)
        data = read_entry(path)
        if not data:
            raise DataError(path, f"{what} entry is empty (0 bytes).", "re-download the file.")
        return _open_header(io.BytesIO(data), path, what)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise DataError(path, f"{what} file not found.", "check the path or remove the entry that points to it.") from None
    except OSError as exc:  # a symbolic-link loop (ELOOP), a permission problem, ...
        raise DataError(path, f"cannot read {what}: {exc.strerror or exc}.",
                        "fix or remove the file (for a link: point it at a real file).") from None
    if size == 0:
        raise DataError(path, f"{what} file is empty (0 bytes).", "re-download or re-export this file.")
    return _open_header(path, path, what)


def _open_header(source: Path | BinaryIO, path: Path, what: str, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Parse the header only and refuse oversized images before any pixel is decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit is checked below
            image = Image.open(source)
    except UnidentifiedImageError:
        raise NotAnImageError(
            path, f"not a readable {what} (unknown or corrupt format).", "replace it with a JPEG or PNG file."
        ) from None
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(
            path, f"{what} is too large to decode safely ({exc}).", f"downscale it below {max_pixels / 1e6:g} Mpx."
        ) from None
    except OSError as exc:
        raise DataError(path, f"cannot open {what}: {exc}.", "re-download or re-export this file.") from None
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise ImageTooLargeError(
            path,
            f"{what} is {width}x{height} px, above the {max_pixels / 1_000_000:g} Mpx safety limit.",
            "downscale it before use.",
        )
    if what == "image" and min(width, height) < MIN_SIDE:
        image.close()
        raise DataError(
            path,
            f"image is {width}x{height} px; its short side is below the {MIN_SIDE} px minimum.",
            "use the original, full-size image.",
        )
    if width < 1 or height < 1:
        raise DataError(path, f"{what} has no pixels ({width}x{height}).", "re-export this file.")
    return image


def _decode(image: Image.Image, path: Path, what: str) -> Image.Image:
    """Decode the pixels at full size (see the module docstring for why never reduced)."""
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(
            path, f"{what} is truncated or corrupt ({exc}).", "re-download or re-export this file."
        ) from None
    return image


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the header alone, after EXIF orientation."""
    return _header(Path(path))[0]


def _header(path: Path) -> tuple[tuple[int, int], str | None]:
    with _open(path, "image") as image:
        width, height = image.size
        orientation = _orientation(image)
        fmt = image.format
    return ((height, width) if orientation in (5, 6, 7, 8) else (width, height)), fmt


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - a broken EXIF block is ignored, as read_image does
        return 1


#: What a complete file of each format ends with (JPEG: EOI marker; PNG: the IEND chunk).
_END_MARKERS = {"JPEG": b"\xff\xd9", "PNG": b"IEND"}


def verify_image(path: str | Path) -> tuple[int, int]:
    """``image_size`` plus a cheap check of the file's end, so a truncated download fails before training.

    Decoding every image up front would take minutes on full-size ISIC images; reading the header
    and the last bytes takes microseconds. Only a file whose end marker is missing is decoded, to
    confirm (a JPEG with padding after its end marker still decodes and passes).
    """
    path = Path(path)
    size, fmt = _header(path)
    if not _ends_well(path, fmt):
        read_image(path)
    return size


def verify_mask(path: str | Path, image_size: tuple[int, int]) -> None:
    """The same pre-flight for a mask: readable header, complete file, and its image's size."""
    path = Path(path)
    with _open(path, "mask") as mask:
        size, fmt = mask.size, mask.format
    check_mask_size(path, size, image_size)
    if not _ends_well(path, fmt):
        read_mask_levels(path)


def _ends_well(path: Path, fmt: str | None) -> bool:
    marker = _END_MARKERS.get(fmt or "")
    if marker is None:
        return True
    if hdf5_entry(path) is not None:
        return marker in read_entry(path)[-32:]
    with open(path, "rb") as handle:
        handle.seek(max(0, path.stat().st_size - 32))
        return marker in handle.read()


#: Rows converted at a time from 16-bit or float pixels (bounds the float copy to a block, not the image).
_ROW_BLOCK = 256


def _full_scale(image: Image.Image) -> float:
    """The value that maps to 255 when 16-bit, 32-bit or float pixels become 8-bit: 65535 for 16-bit
    (or any value above 255), 1 for float images whose values all lie in [0, 1], else 255."""
    peak = float(image.getextrema()[1])
    if image.mode.startswith("I;16") or peak > 255:
        return 65535.0
    return 1.0 if image.mode == "F" and peak <= 1.0 else 255.0


def _to_uint8(image: Image.Image, box: tuple[int, int, int, int] | None = None) -> Image.Image:
    """16-bit, 32-bit and float pixels (of ``box`` only, when given) as 8-bit gray, scaled by the
    whole image's ``_full_scale``, one block of rows at a time: neither a full-size copy of the
    pixels nor a float one is made."""
    high = _full_scale(image)
    left, top, right, bottom = box or (0, 0, *image.size)
    out = np.empty((bottom - top, right - left), dtype=np.uint8)
    for start in range(top, bottom, _ROW_BLOCK):
        stop = min(bottom, start + _ROW_BLOCK)
        block = np.asarray(image.crop((left, start, right, stop))).astype(np.float32)
        block *= 255.0 / high
        block += 0.5
        np.clip(block, 0, 255, out=block)
        out[start - top:stop - top] = block
    return Image.fromarray(out, mode="L")


_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB (16-bit values scaled, not clipped; alpha composited on white)."""
    if image.mode in _WIDE_MODES:
        image = _to_uint8(image)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB") if image.mode != "RGB" else image


def _upright(image: Image.Image, source: str | Path) -> Image.Image:
    """EXIF orientation applied and the short side checked: what every door does before converting."""
    if _orientation(image) != 1:  # exif_transpose copies even an upright image: skip it then
        try:
            image = ImageOps.exif_transpose(image)
        except Exception:  # noqa: BLE001 - a broken EXIF block must not make the pixels unusable
            pass
    if min(image.size) < MIN_SIDE:
        raise DataError(
            Path(str(source)),
            f"image is {image.width}x{image.height} px; its short side is below the {MIN_SIDE} px minimum.",
            "use the original, full-size image.",
        )
    return image


def as_model_rgb(image: Image.Image, source: str | Path = "image") -> Image.Image:
    """THE route from a PIL image (as opened, or decoded here) to the 8-bit RGB every door feeds the
    model: EXIF orientation applied, modes converted by ``to_rgb``, the short side checked."""
    return to_rgb(_upright(image, source))


def centre_square_box(width: int, height: int, ratio: float) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the centre square whose side is ``ratio`` x the short side: the
    preprocessing's crop (``RatioCenterCrop``), with torchvision's ``center_crop`` rounding."""
    side = max(1, int(ratio * min(height, width)))
    left, top = int(round((width - side) / 2.0)), int(round((height - side) / 2.0))
    return left, top, left + side, top + side


@dataclass(frozen=True)
class CentreSquare:
    """The centre square of a decoded upload and the whole image's displayed size."""

    #: (side, side, 3) uint8 RGB, the pixels ``as_model_rgb`` gives there
    pixels: np.ndarray
    width: int
    height: int


def read_centre_square(data: bytes, ratio: float, name: str = "upload",
                       max_pixels: int = MAX_PIXELS) -> CentreSquare:
    """Decode an in-memory file as ``read_image_bytes`` does, but convert only the centre square the
    model sees (``centre_square_box``), a block of rows at a time, after freeing the full-size pixels.

    Why: the service decodes every upload at full size (a reduced decode changes answers), and a huge
    16-bit PNG then costs its decoded pixels plus their 8-bit and RGB copies. Every conversion
    of ``to_rgb`` acts pixel by pixel, so cropping in the original mode and converting the crop (with
    the whole image's scale) gives the pixels of converting first and cropping after.
    """
    image = _upright(*_decode_bytes(data, name, max_pixels))
    width, height = image.size
    box = centre_square_box(width, height, ratio)
    # the square in its cheapest exact form: wide pixels straight to 8-bit gray, others as they are
    square = _to_uint8(image, box=box) if image.mode in _WIDE_MODES else image.crop(box)
    image.close()  # decoded here and owned by nobody else: the full-size pixels go before the RGB exists
    side = square.width
    pixels = np.empty((side, side, 3), dtype=np.uint8)
    for start in range(0, side, _ROW_BLOCK):
        stop = min(side, start + _ROW_BLOCK)
        pixels[start:stop] = np.asarray(to_rgb(square.crop((0, start, side, stop))))
    return CentreSquare(pixels, width, height)


def read_image(path: str | Path) -> Image.Image:
    """Decode ``path`` at full size as 8-bit RGB with EXIF orientation applied."""
    path = Path(path)
    return as_model_rgb(_decode(_open(path, "image"), path, "image"), path)


def read_image_bytes(data: bytes, name: str = "upload", max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode an in-memory file (an HTTP upload) exactly as ``read_image`` decodes a file.

    Nothing is written to disk; ``name`` only labels errors.
    """
    return as_model_rgb(*_decode_bytes(data, name, max_pixels))


def _decode_bytes(data: bytes, name: str, max_pixels: int) -> tuple[Image.Image, Path]:
    """An in-memory file decoded at full size in its own mode, and the name that labels its errors."""
    path = Path(name)
    if not data:
        raise DataError(path, "image file is empty (0 bytes).", "send a JPEG or PNG file.")
    return _decode(_open_header(io.BytesIO(data), path, "image", max_pixels), path, "image"), path


def read_mask_levels(path: str | Path) -> np.ndarray:
    """A mask's 8-bit gray levels (H, W) before binarisation (``data check`` reports non-binary masks)."""
    path = Path(path)
    image = _decode(_open(path, "mask"), path, "mask")
    if image.mode not in ("L", "1"):  # ISIC masks are 8-bit gray already: skip the round trip through RGB
        image = to_rgb(image)
    return np.asarray(image.convert("L") if image.mode != "L" else image)


def check_mask_size(path: str | Path, mask_size: tuple[int, int], image_size: tuple[int, int]) -> None:
    """Masks are paired pixel by pixel: (width, height) must equal the image's."""
    if tuple(mask_size) != tuple(image_size):
        raise DataError(
            path,
            f"mask is {mask_size[0]}x{mask_size[1]} px but its image is {image_size[0]}x{image_size[1]} px.",
            "regenerate the mask at the image's size (masks are paired pixel by pixel).",
        )


def binarize_mask(levels: np.ndarray) -> np.ndarray:
    """``>= 128`` is lesion; a mask whose values are all 0/1 uses 1 for lesion."""
    if levels.max(initial=0) <= 1:
        return levels >= 1
    return levels >= 128


def read_mask(path: str | Path, expected_size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode a binary mask as a bool array (H, W); ``expected_size`` is the image's (width, height)."""
    levels = read_mask_levels(path)
    if expected_size is not None:
        check_mask_size(path, (levels.shape[1], levels.shape[0]), expected_size)
    return binarize_mask(levels)


def read_superpixel_index(path: str | Path, expected_size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode an ISIC superpixel map (int64 (H, W) of superpixel indices).

    ISIC stores the index of each pixel's superpixel in the RGB channels of an 8-bit PNG:
    ``index = R + 256 * G + 65536 * B``. Only lossless RGB(A) maps keep that code intact.
    """
    path = Path(path)
    image = _decode(_open(path, "superpixel map"), path, "superpixel map")
    if image.mode not in ("RGB", "RGBA"):
        raise DataError(
            path,
            f"superpixel map is mode {image.mode}, but ISIC encodes superpixel indices in the RGB channels.",
            "use the original *_superpixels.png from the ISIC archive (not a re-saved or grayscale copy).",
        )
    if expected_size is not None and image.size != tuple(expected_size):
        raise DataError(
            path,
            f"superpixel map is {image.size[0]}x{image.size[1]} px but its image is "
            f"{expected_size[0]}x{expected_size[1]} px.",
            "use the superpixel map that belongs to this image, at its original size.",
        )
    rgb = np.asarray(image, dtype=np.int64)[..., :3]
    return rgb[..., 0] + (rgb[..., 1] << 8) + (rgb[..., 2] << 16)
