"""Images stored as entries of an HDF5 file rather than as files (the ISIC 2024 release's
``train-image.hdf5``: one dataset per ``isic_id`` holding the encoded JPEG bytes).

Such an image's path is ``<file>.hdf5/<key>``, so a ``Sample`` and everything that reads one
(``read_image``, the decode-once cache, the integrity checks) treat it as any other image. The file
is opened once per process and read one entry at a time: nothing is extracted, memory stays
bounded by one encoded image whatever the size of the file, and DataLoader workers each open their
own handle (an HDF5 handle must not cross a fork), so decoding runs in the workers.
h5py is an optional dependency (``pip install 'attnmel[hdf5]'``): only this release needs it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from attnmel.errors import DataError

HDF5_SUFFIXES = (".hdf5", ".h5")
#: the chunk cache of each open file: a scalar image entry needs none, so it cannot grow with the file
_CHUNK_CACHE_BYTES = 1 << 20
_OPEN: dict[tuple[int, Path], Any] = {}


def hdf5_entry(path: Path) -> tuple[Path, str] | None:
    """(HDF5 file, key) when ``path`` names an entry inside an HDF5 file, else None."""
    container = path.parent
    if container.suffix.lower() in HDF5_SUFFIXES and container.is_file():
        return container, path.name
    return None


def open_hdf5(path: Path) -> Any:
    """This process's read-only handle on ``path`` (opened on first use; a forked worker opens its own)."""
    key = (os.getpid(), path)
    if key not in _OPEN:
        try:
            import h5py
        except ImportError:
            raise DataError(path, "reading HDF5 images needs h5py, which is not installed.",
                            "pip install 'attnmel[hdf5]'.") from None
        try:
            _OPEN[key] = h5py.File(path, "r", rdcc_nbytes=_CHUNK_CACHE_BYTES)
        except OSError as exc:
            raise DataError(path, f"not a readable HDF5 file ({exc}).", "re-download the file.") from None
    return _OPEN[key]


def entry_keys(path: Path) -> list[str]:
    """The names of the datasets at the top of an HDF5 file (ISIC IDs), in file order; the handle is
    closed after, so a reader that only lists the file leaves none open for DataLoader workers to inherit."""
    handle = open_hdf5(path)
    try:
        return list(handle.keys())
    finally:
        handle.close()
        _OPEN.pop((os.getpid(), path), None)


#: the largest entry read: an encoded image of ``MAX_PIXELS`` is far smaller; a larger entry is no image,
#: and reading it whole would take that much memory
MAX_ENTRY_BYTES = 512 * 2**20
_FIX = "use the release's image file (one encoded JPEG per ID), or re-download it."


def read_entry(path: Path) -> bytes:
    """The encoded bytes stored at ``<file>/<key>``: a dataset held in the file itself (no link to another
    object or file) that is a scalar (bytes, a string or an opaque value) or a 1-D uint8 array. Anything
    else (a group, a link, floats, a 2-D array of decoded pixels, an unreadable or oversized entry) is a
    ``DataError`` naming the entry, so ``data check`` lists it and training refuses it in one line."""
    entry = hdf5_entry(path)
    if entry is None:
        raise DataError(path, "not an entry of an HDF5 file.", "name it as <file>.hdf5/<key>.")
    container, key = entry
    handle = open_hdf5(container)  # says in one line when h5py is missing
    import h5py

    try:
        link = handle.get(key, getlink=True)
        if link is None:
            raise DataError(path, f"{container.name} has no entry {key!r}.", "check the image ID or re-download the file.")
        if not isinstance(link, h5py.HardLink):
            raise DataError(path, f"entry is an HDF5 {type(link).__name__} to {getattr(link, 'path', '?')!r}, not an "
                                  "image stored in the file.", _FIX)
        node = handle[key]
        if not isinstance(node, h5py.Dataset):
            raise DataError(path, f"entry is an HDF5 {type(node).__name__.lower()}, not a dataset holding an encoded "
                                  "image.", _FIX)
        dtype, shape = node.dtype, node.shape
        scalar = shape == () and (dtype.kind in "SOV" or h5py.check_string_dtype(dtype) is not None)
        if not scalar and not (len(shape) == 1 and dtype == np.uint8):
            raise DataError(path, f"entry holds {dtype} data of shape {shape}"
                                  + (" (decoded pixels?)" if len(shape) > 1 else "") + ", not an encoded image.", _FIX)
        if not scalar and shape[0] * dtype.itemsize > MAX_ENTRY_BYTES:
            raise DataError(path, f"entry holds {shape[0] / 2**20:.0f} MiB, more than any encoded image "
                                  f"({MAX_ENTRY_BYTES / 2**20:.0f} MiB at most).", _FIX)
        value = node[()]
    except DataError:
        raise
    except (OSError, KeyError, TypeError, ValueError, RuntimeError) as exc:  # h5py's errors for a broken file
        raise DataError(path, f"cannot read this entry ({type(exc).__name__}: {exc}).", _FIX) from None
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, np.void):
        return value.tobytes()
    array = np.asarray(value)
    if array.dtype == np.uint8:
        return array.tobytes()
    if array.dtype.kind == "S" and array.ndim == 0:
        return array.item()
    raise DataError(path, f"entry holds {array.dtype} data of shape {array.shape}, not an encoded image.", _FIX)
