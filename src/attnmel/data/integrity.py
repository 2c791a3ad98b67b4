"""``attnmel data check``: what is wrong with a dataset, before a GPU-day is spent on it.

Each finding has a severity:
- ``error``: ``attnmel train``/``evaluate`` would stop on it (unreadable files, masks of the wrong
  size, IDs without image or label, bad labels), or the results would be invalid (the same image
  in a training and an evaluation split, the same image with two labels);
- ``warning``: it works, but is probably not what you want (duplicates, near-identical images
  across splits, images smaller than the model input, non-binary or empty masks, orphan masks);
- ``info``: worth knowing (near-identical images within a split, images outside the task).

Lesions and patients (``lesion_id``, ``patient_id``) with images on both sides of a dataset's own
partition, or in one dataset's training split and another's evaluation split, are a ``leak`` just
as the same pixels are; so are duplicates the dataset lists itself (ISIC 2020) in two splits.

Duplicates and leakage are found by two hashes of the decoded pixels: a content hash (identical
pixels, whatever the container or metadata) and a perceptual hash (``imagehash.phash`` with 256
bits, for re-encoded, resized or colour-processed copies). Two images are called near-identical
when their perceptual hashes differ in at most ``phash_distance`` bits (default 38): on ISIC
2016 + 2017 every pair up to 38 is the same photograph (re-encoded or colour-corrected copies
under another ID), and the first pair of different lesions appears at 40.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import imagehash
import numpy as np

from attnmel.data.images import binarize_mask, check_mask_size, read_image, read_mask_levels
from attnmel.data.readers import read_dataset
from attnmel.data.records import GROUP_COLUMNS, DatasetIndex, Sample
from attnmel.errors import DataError
from attnmel.io import progress_bar

SEVERITIES = ("error", "warning", "info")
TRAINING_SPLITS = frozenset({"train", "training"})
DEFAULT_MIN_SIZE = 224
DEFAULT_PHASH_DISTANCE = 38
PHASH_BITS = 16  # hash_size: 16 x 16 = 256 bits

#: kind -> (severity, what a group of such findings is, for the text report)
KINDS: dict[str, tuple[str, str]] = {
    "unreadable_image": ("error", "images that cannot be decoded"),
    "unreadable_mask": ("error", "masks that cannot be decoded"),
    "mask_size": ("error", "masks whose size differs from their image"),
    "missing_image": ("error", "labelled IDs without an image"),
    "unlabelled_image": ("error", "images without a label"),
    "duplicate_id": ("error", "IDs listed more than once"),
    "bad_label": ("error", "labels that are missing or invalid"),
    "leak": ("error", "identical images in two splits, or one lesion or patient on both sides (train/val/test must be "
                      "disjoint)"),
    "label_conflict": ("error", "the same image with different labels"),
    "similar_leak": ("warning", "near-identical images (perceptual hash) in two splits"),
    "duplicate_image": ("warning", "identical images twice in one dataset"),
    "listed_duplicate": ("warning", "images the dataset lists as duplicates (grouped splits keep them together)"),
    "small_image": ("warning", "images smaller than the model input (they are upsampled)"),
    "non_binary_mask": ("warning", "masks with values other than 0 and 255 (binarised at 128)"),
    "empty_mask": ("warning", "lesion masks without a lesion pixel"),
    "orphan_mask": ("warning", "masks without an image"),
    "missing_mask": ("warning", "masks listed but not found"),
    "similar_image": ("info", "near-identical images (perceptual hash) within one split"),
    "shared_image": ("info", "identical images in two datasets, not a leak (both training or both evaluation)"),
    "other_class": ("info", "images outside the task's classes (left out)"),
    "partial_split": ("info", "splits with images but no ground truth, or the reverse (left out)"),
}


@dataclass(frozen=True)
class Finding:
    severity: str
    kind: str
    message: str
    paths: tuple[Path, ...] = ()

    def to_dict(self) -> dict:
        return {"severity": self.severity, "kind": self.kind, "message": self.message,
                "paths": [str(p) for p in self.paths]}


def finding(kind: str, message: str, paths: Iterable[Path | None] = ()) -> Finding:
    return Finding(KINDS[kind][0], kind, message, tuple(p for p in paths if p is not None))


@dataclass
class IntegrityReport:
    datasets: list[DatasetIndex]
    findings: list[Finding] = field(default_factory=list)
    seconds: float = 0.0
    images_checked: int = 0
    masks_checked: int = 0
    settings: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.count("error")

    def count(self, severity: str) -> int:
        return sum(f.severity == severity for f in self.findings)

    def of_kind(self, kind: str) -> list[Finding]:
        return [f for f in self.findings if f.kind == kind]

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "counts": {s: self.count(s) for s in SEVERITIES},
            "seconds": round(self.seconds, 2),
            "checked": {"images": self.images_checked, "masks": self.masks_checked},
            "settings": self.settings,
            "datasets": [index.summary() for index in self.datasets],
            "findings": [f.to_dict() for f in self.findings],
        }

    def to_text(self, limit: int = 10) -> str:
        lines = []
        for index in self.datasets:
            summary = index.summary()
            lines.append(f"{summary['root']}  (layout: {summary['layout']}, task: {summary['task']})")
            if "modality" in summary:
                lines.append(f"  images: {summary['modality']}")
            for name, split in summary["splits"].items():
                classes = ", ".join(f"{cls} {n}" for cls, n in split["classes"].items())
                group_counts = "".join(f"; {n} {column.removesuffix('_id')}{'s' if n != 1 else ''}"
                                 for column, n in split.get("groups", {}).items())
                left_out = ", ".join(f"{cls} {n}" for cls, n in split.get("left_out", {}).items())
                lines.append(
                    f"  {name:<6} {split['images']:>6} images ({classes}); masks {split['masks_present']} present, "
                    f"{split['masks_missing']} missing{group_counts}" + (f"; left out: {left_out}" if left_out else "")
                )
                for criterion, values in split.get("criteria", {}).items():
                    lines.append(f"         {criterion}: " + ", ".join(f"{value} {n}" for value, n in values.items()))
        groups: dict[str, list[Finding]] = defaultdict(list)
        for item in self.findings:
            groups[item.kind].append(item)
        for severity in SEVERITIES:
            for kind, items in groups.items():
                if KINDS[kind][0] != severity:
                    continue
                lines.append(f"{severity.upper()} {kind} ({len(items)}): {KINDS[kind][1]}")
                lines.extend(f"  {item.message}" for item in items[:limit])
                if len(items) > limit:
                    lines.append(f"  ... and {len(items) - limit} more (--json lists all)")
        counts = ", ".join(f"{self.count(s)} {s}{'s' if self.count(s) != 1 else ''}" for s in SEVERITIES)
        decoded = f"{self.images_checked} images and {self.masks_checked} masks decoded" if self.settings.get(
            "decode", True) else "layout only (--no-decode)"
        lines.append(f"{counts}; {decoded} in {self.seconds:.1f} s")
        return "\n".join(lines)


@dataclass
class _Entry:
    """One sample as seen by the checks: where it is, and what its pixels hash to."""

    dataset: int
    sample: Sample
    size: tuple[int, int] | None = None
    content: bytes | None = None
    phash: np.ndarray | None = None  # PHASH_BITS**2 bits as uint64 words
    findings: list[Finding] = field(default_factory=list)
    masks: int = 0


def check_dataset(root: str | Path, task: str = "melanoma", **options) -> IntegrityReport:
    return check_datasets([root], task, **options)


def check_datasets(
    roots: Sequence[str | Path],
    task: str = "melanoma",
    *,
    decode: bool = True,
    min_size: int = DEFAULT_MIN_SIZE,
    phash_distance: int = DEFAULT_PHASH_DISTANCE,
    workers: int | None = None,
    progress: bool = False,
) -> IntegrityReport:
    """Read each dataset (tolerating bad entries, which become findings), decode every file, and
    look for duplicates, leakage and label conflicts within and across the datasets given."""
    started = time.perf_counter()
    indexes = [read_dataset(root, task, skip_bad=True) for root in roots]
    report = IntegrityReport(indexes, settings={"decode": decode, "min_size": min_size, "phash_distance": phash_distance})
    for index in indexes:
        report.findings += [finding(p.kind, f"{p.path}: {p.message}" if p.path else p.message, [p.path])
                            for p in index.problems]
    entries = [_Entry(i, s) for i, index in enumerate(indexes) for split in index.splits.values() for s in split]
    names = _dataset_names(indexes)
    if decode:
        workers = workers or min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(workers) as pool:
            for entry in progress_bar(pool.map(_inspect, entries), show=progress, total=len(entries), desc="checking",
                                      unit="img"):
                report.findings += entry.findings
                report.masks_checked += entry.masks
        report.images_checked = len(entries)
        report.findings += _small_images(entries, names, min_size)
        report.findings += _duplicates(entries, names, phash_distance)
    report.findings += _label_conflicts(entries, names, indexes[0].task.class_names)
    report.findings += _group_leaks(entries, names)
    report.findings += _listed_duplicates(indexes, entries, names)
    report.seconds = time.perf_counter() - started
    return report


def _dataset_names(indexes: list[DatasetIndex]) -> list[str]:
    names = [index.root.name or str(index.root) for index in indexes]
    return [str(index.root) if names.count(name) > 1 else name for name, index in zip(names, indexes, strict=True)]


def _where(entry: _Entry, names: list[str]) -> str:
    return f"{names[entry.dataset]}/{entry.sample.split} {entry.sample.image_id}"


# --------------------------------------------------------------------------------------------- per file


def _inspect(entry: _Entry) -> _Entry:
    """Decode the image and its masks, hash the pixels; runs in a thread (PIL releases the GIL)."""
    sample = entry.sample
    try:
        image = read_image(sample.image_path)
    except DataError as exc:
        entry.findings.append(finding("unreadable_image", str(exc), [sample.image_path]))
        return entry
    _hash_pixels(entry, image)
    masks = [(sample.mask_path, True), *((p, False) for p in sample.attribute_paths.values())]
    for path, is_lesion in masks:
        if path is None:
            continue
        entry.masks += 1
        try:
            levels = read_mask_levels(path)
        except DataError as exc:
            entry.findings.append(finding("unreadable_mask", str(exc), [path]))
            continue
        try:
            check_mask_size(path, (levels.shape[1], levels.shape[0]), image.size)
        except DataError as exc:
            entry.findings.append(finding("mask_size", str(exc), [path]))
            continue
        if levels.max(initial=0) > 1:
            between = float(np.mean((levels > 0) & (levels < 255)))
            if between > 0:
                entry.findings.append(finding(
                    "non_binary_mask", f"{path}: {between:.1%} of pixels are neither 0 nor 255; binarised at 128.", [path]))
        if is_lesion and not binarize_mask(levels).any():
            entry.findings.append(finding("empty_mask", f"{path}: no lesion pixel; the lesion prior learns nothing from it.",
                                          [path]))
    return entry


def _hash_pixels(entry: _Entry, image) -> None:
    entry.size = image.size
    entry.content = hashlib.blake2b(f"{image.size}".encode() + image.tobytes(), digest_size=16).digest()
    bits = imagehash.phash(image, hash_size=PHASH_BITS).hash.reshape(-1)
    entry.phash = np.packbits(bits).view(np.uint64)


def _hash_only(entry: _Entry) -> _Entry:
    try:
        _hash_pixels(entry, read_image(entry.sample.image_path))
    except DataError as exc:
        entry.findings.append(finding("unreadable_image", str(exc), [entry.sample.image_path]))
    return entry


def duplicate_pairs(
    train: Sequence[Sample],
    evaluated: Mapping[str, Sequence[Sample]],
    *,
    phash_distance: int = DEFAULT_PHASH_DISTANCE,
    workers: int | None = None,
) -> list[tuple[Sample, Sample, str]]:
    """(training image, evaluated image, how) for every pair with the same or near-identical pixels,
    by the same two hashes as ``check_datasets``: what a run refuses before its first step."""
    sides = list(evaluated)
    entries = [_Entry(0, s) for s in train] + [
        _Entry(1 + k, s) for k, side in enumerate(sides) for s in evaluated[side]]
    with ThreadPoolExecutor(workers or min(8, os.cpu_count() or 1)) as pool:
        entries = [e for e in pool.map(_hash_only, entries) if e.content is not None]
    groups: dict[bytes, list[_Entry]] = defaultdict(list)
    for entry in entries:
        groups[entry.content].append(entry)
    unique = list(groups.values())
    out: list[tuple[Sample, Sample, str]] = []

    def pairs(left: list[_Entry], right: list[_Entry], how: str) -> None:
        """Each training entry of one side against each judged entry of the other."""
        for trained, judged in ((left, right), (right, left)) if left is not right else ((left, left),):
            out.extend((a.sample, b.sample, f"{how} in {sides[b.dataset - 1]}")
                       for a in trained if a.dataset == 0 for b in judged if b.dataset > 0)

    for group in unique:
        pairs(group, group, "same pixels")
    hashes = (np.stack([g[0].phash for g in unique])  # type: ignore[misc]  # a hashed entry has its phash
              if unique else np.zeros((0, PHASH_BITS**2 // 64), np.uint64))
    for i, j, distance in close_pairs(hashes, phash_distance):
        pairs(unique[i], unique[j], f"near-identical (perceptual distance {distance}/{PHASH_BITS**2})")
    return out


def near_identical_pairs(samples: Sequence[Sample], *, phash_distance: int = DEFAULT_PHASH_DISTANCE,
                         workers: int | None = None) -> list[tuple[str, str]]:
    """Image-ID pairs among ``samples`` with the same or near-identical pixels (the hashes of
    ``check_datasets``): photographs a grouped split keeps on one side."""
    found = duplicate_pairs(samples, {"pool": samples}, phash_distance=phash_distance, workers=workers)
    return sorted({(min(a.image_id, b.image_id), max(a.image_id, b.image_id)) for a, b, _ in found if a.image_id != b.image_id})


def _small_images(entries: list[_Entry], names: list[str], min_size: int) -> list[Finding]:
    """One finding per split: a reduced copy of a dataset makes every image small, and one line says so."""
    small: dict[tuple[int, str], list[_Entry]] = defaultdict(list)
    total: dict[tuple[int, str], int] = defaultdict(int)
    for entry in entries:
        key = (entry.dataset, entry.sample.split)
        total[key] += 1
        if entry.size is not None and min(entry.size) < min_size:
            small[key].append(entry)
    out = []
    for (dataset, split), group in small.items():
        smallest = min(group, key=lambda e: min(e.size))
        out.append(finding(
            "small_image",
            f"{names[dataset]}/{split}: {len(group)} of {total[(dataset, split)]} images have a short side below {min_size} px "
            f"(smallest {smallest.size[0]}x{smallest.size[1]}, {smallest.sample.image_path.name}); --min-size sets the limit.",
            [e.sample.image_path for e in group],
        ))
    return out


# --------------------------------------------------------------------------------------------- across files


def _leak_pair(a: _Entry, b: _Entry) -> bool:
    """Splits of one dataset must be disjoint; across datasets, training vs evaluation is a leak."""
    if a.dataset == b.dataset:
        return a.sample.split != b.sample.split
    return (a.sample.split in TRAINING_SPLITS) != (b.sample.split in TRAINING_SPLITS)


def _any_leak(left: list[_Entry], right: list[_Entry]) -> bool:
    return any(_leak_pair(a, b) for a in left for b in right)


def _duplicates(entries: list[_Entry], names: list[str], max_distance: int) -> list[Finding]:
    groups: dict[bytes, list[_Entry]] = defaultdict(list)
    for entry in entries:
        if entry.content is not None:
            groups[entry.content].append(entry)
    out = []
    for group in groups.values():
        if len(group) < 2:
            continue
        where = " = ".join(_where(e, names) for e in group)
        paths = [e.sample.image_path for e in group]
        if _any_leak(group, group):
            kind = "leak"
        else:
            kind = "duplicate_image" if len({e.dataset for e in group}) < len(group) else "shared_image"
        out.append(finding(kind, f"same pixels: {where}", paths))
    unique = list(groups.values())
    hashes = (np.stack([g[0].phash for g in unique])  # type: ignore[misc]  # a hashed entry has its phash
              if unique else np.zeros((0, PHASH_BITS**2 // 64), np.uint64))
    for i, j, distance in close_pairs(hashes, max_distance):
        left, right = unique[i], unique[j]
        kind = "similar_leak" if _any_leak(left, right) else "similar_image"
        where = f"{', '.join(_where(e, names) for e in left)} ~ {', '.join(_where(e, names) for e in right)}"
        out.append(finding(kind, f"{where} (perceptual distance {distance}/{PHASH_BITS**2}); probably the same "
                                 "photograph re-encoded or colour-processed", [e.sample.image_path for e in left + right]))
    return out


def close_pairs(hashes: np.ndarray, max_distance: int, block: int = 512) -> list[tuple[int, int, int]]:
    """(i, j, Hamming distance) for i < j within ``max_distance``; ``hashes`` is (n, words) uint64.

    Blocked so that memory stays at block x n distances; numpy's popcount does the counting.
    """
    out = []
    n = len(hashes)
    for start in range(0, n, block):
        chunk = hashes[start : start + block]
        distance = np.zeros((len(chunk), n), dtype=np.uint16)
        for word in range(hashes.shape[1]):
            distance += _popcount(chunk[:, word][:, None] ^ hashes[:, word][None, :])
        rows, cols = np.nonzero(distance <= max_distance)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            if start + r < c:
                out.append((start + r, c, int(distance[r, c])))
    return out


def _popcount(words: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # numpy >= 2
        return np.bitwise_count(words).astype(np.uint16)
    bits = np.unpackbits(words.view(np.uint8).reshape(*words.shape, 8), axis=-1)
    return bits.sum(axis=-1, dtype=np.uint16)


def _label_conflicts(entries: list[_Entry], names: list[str], class_names: Sequence[str]) -> list[Finding]:
    """The same image (same pixels, or the same ID in two datasets) must carry the same label."""
    parent = list(range(len(entries)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_by_key: dict[tuple, int] = {}
    for i, entry in enumerate(entries):
        keys = [("id", entry.sample.image_id)] + ([("pixels", entry.content)] if entry.content is not None else [])
        for key in keys:
            j = first_by_key.setdefault(key, i)
            parent[root(i)] = root(j)
    components: dict[int, list[_Entry]] = defaultdict(list)
    for i, entry in enumerate(entries):
        components[root(i)].append(entry)
    out = []
    for members in components.values():
        if len({m.sample.label for m in members}) < 2:
            continue
        described = ", ".join(f"{_where(m, names)} is {class_names[m.sample.label]}" for m in members)
        out.append(finding("label_conflict", f"one image, different labels: {described}",
                           [m.sample.image_path for m in members]))
    return out


def _group_leaks(entries: list[_Entry], names: list[str]) -> list[Finding]:
    """One finding per lesion or patient whose images are on both sides of a split (``_leak_pair``)."""
    out = []
    for column in GROUP_COLUMNS:
        members: dict[str, list[_Entry]] = defaultdict(list)
        for entry in entries:
            value = entry.sample.groups.get(column)
            if value is not None:
                members[value].append(entry)
        for value, group in members.items():
            if len(group) > 1 and _any_leak(group, group):
                sides = sorted({f"{names[e.dataset]}/{e.sample.split}" for e in group})
                shown = ", ".join(_where(e, names) for e in group[:6]) + (", ..." if len(group) > 6 else "")
                out.append(finding("leak", f"{column} {value} has images in {' and '.join(sides)}: {shown}",
                                   [e.sample.image_path for e in group]))
    return out


def _listed_duplicates(indexes: list[DatasetIndex], entries: list[_Entry], names: list[str]) -> list[Finding]:
    """The duplicates a dataset lists itself: a leak across its splits, else worth a warning."""
    by_id = {(entry.dataset, entry.sample.image_id): entry for entry in entries}
    out = []
    for dataset, index in enumerate(indexes):
        for a, b in index.duplicates:
            pair = [by_id.get((dataset, a)), by_id.get((dataset, b))]
            if None in pair:
                continue
            kind = "leak" if _leak_pair(*pair) else "listed_duplicate"
            out.append(finding(kind, f"listed as duplicates: {_where(pair[0], names)} = {_where(pair[1], names)}",
                               [e.sample.image_path for e in pair]))
    return out
