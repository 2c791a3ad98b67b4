"""Decode once: the paper's deterministic geometry (centre crop, resize, uint8) kept on disk.

Every epoch of the original code decodes every full-size JPEG again; a cached 3x256x256 array
loads far faster (measured in ``benchmarks/RESULTS.md``, "Training speed"). What is
stored is exactly the output of ``transforms.geometry`` (and, for masks, of the same geometry
applied to the region of interest), so a cached run sees the same pixels as an uncached one.

Entries are content-addressed. An image's key hashes the file's bytes (SHA-256), the geometry
and the decoder versions (Pillow, torchvision): a changed file gets a new key, so a stale entry
can never be read, and ``prepare`` deletes the entry the old content left behind. A region's
key hashes the image, every mask file of the sample (lesion mask, attribute masks, superpixels)
and the ROI spec, because a region depends on all of them (``masks.region_of_interest``).

Layout of ``<cache_dir>/geometry-v1/``::

    images/ab/<key>.npy     uint8 (3, R, R)
    regions/ab/<key>.npy    uint8 (1, R, R), values 0/1
    regions/ab/<key>.none   empty: this sample has no region for this ROI spec
    index.json              source path -> keys and hashes (advisory: lookups never read it)

Entries are plain ``.npy`` files read with ``allow_pickle=False``. They are written to a temporary
file and renamed (atomic), without fsync: an entry is checked by size before use and rebuilt when
torn, and fsync-ing thousands of small files would dominate the build.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import PIL
import torch
import torchvision
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors

from attnmel.data.dataset import load_pair
from attnmel.data.hdf5 import hdf5_entry, read_entry
from attnmel.data.images import image_size
from attnmel.data.masks import RoiSpec, has_region, region_of_interest
from attnmel.data.records import Sample
from attnmel.data.transforms import geometry
from attnmel.errors import DataError
from attnmel.io import atomic_write_json, file_sha256, progress_bar

FORMAT_VERSION = 1
CACHE_DIR_ENV = "ATTNMEL_CACHE_DIR"

#: (image uint8 3xRxR, region uint8 1xRxR, whether the sample has a region)
GeometryPair = tuple[tv_tensors.Image, tv_tensors.Mask, bool]


def default_cache_dir() -> Path:
    """``$ATTNMEL_CACHE_DIR``, else ``$XDG_CACHE_HOME/attnmel``, else ``~/.cache/attnmel``."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV])
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "attnmel"


def source_sha256(path: str | Path) -> str:
    """The key of a source file's cache entries: the SHA-256 of its bytes (of an HDF5 entry's bytes)."""
    if hdf5_entry(Path(path)) is not None:
        return hashlib.sha256(read_entry(Path(path))).hexdigest()
    try:
        return file_sha256(path)
    except OSError as exc:
        raise DataError(path, f"cannot read the file to cache it ({exc.strerror or exc}).", "check the file.") from None


def decode_geometry(sample: Sample, roi: RoiSpec | None, resize: int, crop_ratio: float) -> GeometryPair:
    """Decode ``sample`` and apply the deterministic geometry to the image and its region."""
    image, mask, has_mask = load_pair(sample, roi)
    out = geometry(resize, crop_ratio)({"image": image, "mask": mask})
    return out["image"], out["mask"], has_mask


def _mask_files(sample: Sample) -> dict[str, Path]:
    """Every mask file a region of ``sample`` may be built from, by role."""
    files = {f"attribute:{name}": path for name, path in sorted(sample.attribute_paths.items())}
    if sample.mask_path is not None:
        files["mask"] = sample.mask_path
    if sample.superpixel_paths is not None:
        files["superpixels"], files["superpixel_features"] = sample.superpixel_paths
    return files


def _npy_size(shape: tuple[int, ...]) -> int:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(shape, dtype=np.uint8), allow_pickle=False)
    return buffer.tell()


def _save_npy(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, np.ascontiguousarray(array, dtype=np.uint8), allow_pickle=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _load_npy(path: Path, shape: tuple[int, ...]) -> torch.Tensor:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(path, f"unreadable cache entry ({exc}).", "run `attnmel data cache` again to rebuild it.") from None
    if array.shape != shape or array.dtype != np.uint8:
        raise DataError(path, f"cache entry holds {array.dtype} {array.shape}, expected uint8 {shape}.",
                        "delete the cache folder and rebuild it.")
    return torch.from_numpy(array)


@dataclass(frozen=True)
class CachedItem:
    """Where one sample's arrays live; ``region`` is None when the sample has no region."""

    image: Path
    region: Path | None


@dataclass
class CachedSplit:
    """A set of samples resolved against the cache: ``load(sample)`` replaces decode + geometry."""

    resize: int
    items: dict[str, CachedItem]
    images_built: int = 0
    regions_built: int = 0
    removed: int = 0
    #: samples that failed to decode while the cache was prepared (image path -> message)
    failed: dict[str, str] = field(default_factory=dict)

    def load(self, sample: Sample) -> GeometryPair:
        source = str(sample.image_path)
        if source in self.failed:
            raise DataError(None, self.failed[source])
        item = self.items[source]
        image = _load_npy(item.image, (3, self.resize, self.resize))
        if item.region is None:
            return tv_tensors.Image(image), tv_tensors.Mask(torch.zeros(1, self.resize, self.resize, dtype=torch.uint8)), False
        return tv_tensors.Image(image), tv_tensors.Mask(_load_npy(item.region, (1, self.resize, self.resize))), True


@dataclass(frozen=True)
class _Resolved:
    source: str
    image_sha: str
    image_key: str
    region_key: str | None
    has_region: bool
    built_image: bool
    built_region: bool


class GeometryCache:
    """The on-disk cache for one geometry (``resize``, ``crop_ratio``) under ``root``."""

    def __init__(self, root: str | Path | None = None, resize: int = 256, crop_ratio: float = 0.8):
        self.root = Path(root or default_cache_dir()).expanduser() / f"geometry-v{FORMAT_VERSION}"
        self.resize = int(resize)
        self.crop_ratio = float(crop_ratio)
        self._sizes = {"images": _npy_size((3, resize, resize)), "regions": _npy_size((1, resize, resize))}

    @property
    def fingerprint(self) -> dict:
        """Everything besides the file bytes that the cached pixels depend on."""
        return {
            "format": FORMAT_VERSION,
            "resize": self.resize,
            "crop_ratio": self.crop_ratio,
            "pillow": PIL.__version__,
            "torchvision": torchvision.__version__.split("+")[0],
        }

    def _key(self, payload: dict) -> str:
        return hashlib.sha256(json.dumps({**payload, **self.fingerprint}, sort_keys=True).encode()).hexdigest()

    def image_key(self, image_sha: str) -> str:
        return self._key({"image": image_sha})

    def region_key(self, image_sha: str, mask_shas: dict[str, str], roi: RoiSpec) -> str:
        spec = {"kind": roi.kind, "features": sorted(roi.features) if roi.kind == "dermo" else []}
        return self._key({"image": image_sha, "masks": mask_shas, "roi": spec})

    def entry(self, kind: str, key: str, suffix: str = ".npy") -> Path:
        return self.root / kind / key[:2] / f"{key}{suffix}"

    def _present(self, kind: str, key: str) -> bool:
        path = self.entry(kind, key)
        try:
            return path.stat().st_size == self._sizes[kind]
        except FileNotFoundError:
            return False

    # ------------------------------------------------------------------ building

    def resolve(self, sample: Sample, roi: RoiSpec | None) -> _Resolved:
        """Hash ``sample``'s files, build the entries it lacks, and say where they are."""
        image_sha = source_sha256(sample.image_path)
        image_key = self.image_key(image_sha)
        region_key = None
        if roi is not None and has_region(sample, roi):
            mask_shas = {role: source_sha256(path) for role, path in _mask_files(sample).items()}
            region_key = self.region_key(image_sha, mask_shas, roi)
        need_image = not self._present("images", image_key)
        need_region = region_key is not None and not (
            self._present("regions", region_key) or self.entry("regions", region_key, ".none").exists()
        )
        if need_image:
            image, mask, found = decode_geometry(sample, roi if need_region else None, self.resize, self.crop_ratio)
            _save_npy(self.entry("images", image_key), image.numpy())
        elif need_region:
            region = region_of_interest(sample, roi, image_size(sample.image_path))
            found = region is not None
            if found:
                mask = geometry(self.resize, self.crop_ratio)(tv_tensors.Mask(torch.from_numpy(region.astype(np.uint8))[None]))
        if need_region:
            if found:
                _save_npy(self.entry("regions", region_key), mask.numpy())
            else:
                marker = self.entry("regions", region_key, ".none")
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.touch()
        has = region_key is not None and self._present("regions", region_key)
        return _Resolved(str(sample.image_path), image_sha, image_key, region_key, has, need_image, need_region)

    def prepare(
        self,
        samples: Sequence[Sample],
        roi: RoiSpec | None = None,
        *,
        num_workers: int = 0,
        progress: bool = False,
        desc: str = "cache",
        update_index: bool = True,
        skip_bad: bool = False,
    ) -> CachedSplit:
        """Make sure every sample (and its region for ``roi``) is cached; build what is missing in
        ``num_workers`` processes; record the entries in the index and drop those left behind by
        files that changed (unless ``update_index`` is false: other processes of a distributed run).
        With ``skip_bad`` a sample that fails to decode is left out (``CachedSplit.failed``)."""
        loader = DataLoader(
            _ResolveAll(self, list(samples), roi, skip_bad), batch_size=None, num_workers=num_workers,
            collate_fn=_identity, persistent_workers=False,
        )
        outcomes = list(progress_bar(loader, total=len(samples), desc=desc, show=progress, unit="img", leave=False))
        resolved = [r for r in outcomes if isinstance(r, _Resolved)]
        failed = dict(r for r in outcomes if not isinstance(r, _Resolved))
        removed = self._update_index(resolved, roi) if update_index else 0
        items = {
            r.source: CachedItem(self.entry("images", r.image_key), self.entry("regions", r.region_key) if r.has_region else None)
            for r in resolved
        }
        return CachedSplit(
            self.resize,
            items,
            images_built=sum(r.built_image for r in resolved),
            regions_built=sum(r.built_region for r in resolved),
            removed=removed,
            failed=failed,
        )

    # ------------------------------------------------------------------ index and pruning

    @property
    def index_path(self) -> Path:
        return self.root / "index.json"

    def read_index(self) -> dict:
        try:
            index = json.loads(self.index_path.read_text())
        except (OSError, json.JSONDecodeError):
            return {"format": "attnmel-geometry-cache", "version": FORMAT_VERSION, "sources": {}}
        return index if isinstance(index.get("sources"), dict) else {"format": "attnmel-geometry-cache", "sources": {}}

    def _update_index(self, resolved: list[_Resolved], roi: RoiSpec | None) -> int:
        """Record where each source's entries are; delete entries no source refers to any more."""
        index = self.read_index()
        sources: dict[str, dict] = index["sources"]
        roi_tag = None if roi is None else (roi.kind if roi.kind != "dermo" else f"dermo:{','.join(sorted(roi.features))}")
        geometry_tag = f"{self.resize}/{self.crop_ratio}"
        dropped: list[tuple[str, str]] = []
        for r in resolved:
            record = sources.setdefault(r.source, {})
            views = record.setdefault("geometry", {})
            old = views.get(geometry_tag, {})
            if old.get("image") not in (None, r.image_key):
                dropped.append(("images", old["image"]))
                dropped += [("regions", key) for key in old.get("regions", {}).values()]
                old = {}
            regions = dict(old.get("regions", {}))
            if roi_tag is not None and r.region_key is not None:
                if regions.get(roi_tag) not in (None, r.region_key):
                    dropped.append(("regions", regions[roi_tag]))
                regions[roi_tag] = r.region_key
            record["sha256"] = r.image_sha
            views[geometry_tag] = {"image": r.image_key, "regions": regions}
        referenced = {
            (kind, key)
            for record in sources.values()
            for view in record.get("geometry", {}).values()
            for kind, key in [("images", view.get("image")), *(("regions", k) for k in view.get("regions", {}).values())]
        }
        removed = 0
        for kind, key in set(dropped) - referenced:
            for suffix in (".npy", ".none"):
                path = self.entry(kind, key, suffix)
                if path.exists():
                    path.unlink()
                    removed += suffix == ".npy"
        index.update({"format": "attnmel-geometry-cache", "version": FORMAT_VERSION, "fingerprint": self.fingerprint})
        atomic_write_json(self.index_path, index)
        return removed

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.rglob("*.npy")) if self.root.exists() else 0


def _identity(item):
    return item


class _ResolveAll(Dataset):
    def __init__(self, cache: GeometryCache, samples: list[Sample], roi: RoiSpec | None, skip_bad: bool = False):
        self.cache, self.samples, self.roi, self.skip_bad = cache, samples, roi, skip_bad

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> _Resolved | tuple[str, str]:
        try:
            return self.cache.resolve(self.samples[index], self.roi)
        except DataError as exc:
            if not self.skip_bad:
                raise
            return str(self.samples[index].image_path), str(exc)


def build_cache(
    data: str | Path,
    *,
    cache_dir: str | Path | None = None,
    resize: int = 256,
    crop_ratio: float = 0.8,
    rois: Sequence[RoiSpec] = (),
    layout: str | None = None,
    num_workers: int = 0,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Cache every split of a dataset and the regions ``rois`` of its samples (``attnmel data cache``)."""
    from attnmel.data.readers import read_dataset

    index = read_dataset(data, layout=layout)
    cache = GeometryCache(cache_dir, resize, crop_ratio)
    report: dict = {"cache_dir": str(cache.root), "splits": {}}
    for split, samples in index.splits.items():
        passes: list[RoiSpec | None] = [roi for roi in rois if any(has_region(s, roi) for s in samples)] or [None]
        counts: dict[str, Any] = {"images": len(samples), "images_built": 0, "regions_built": 0, "removed": 0, "regions": {}}
        for roi in passes:
            result = cache.prepare(samples, roi, num_workers=num_workers, progress=progress, desc=f"cache {split}")
            counts["images_built"] += result.images_built
            counts["regions_built"] += result.regions_built
            counts["removed"] += result.removed
            if roi is not None:
                counts["regions"][roi.kind] = sum(item.region is not None for item in result.items.values())
        report["splits"][split] = counts
        regions = ", ".join(f"{n} {kind} regions" for kind, n in counts["regions"].items())
        log(f"{split}: {counts['images']} images, {counts['images_built']} decoded now, "
            f"{counts['images'] - counts['images_built']} already cached"
            + (f", {regions} ({counts['regions_built']} built)" if regions else "")
            + (f"; {counts['removed']} stale entries removed" if counts["removed"] else ""))
    report["bytes"] = cache.size_bytes()
    return report
