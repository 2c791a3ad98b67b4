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

Duplicates and leaks are found by the one leak detector a training run also uses
(``attnmel.data.leaks``: the same pixels, near-identical pixels by perceptual hash, one lesion or
patient); this module places every split of every dataset for it (``_leak_pair``: which splits must
be disjoint) and reports what it finds, with the duplicates that are not leaks.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from attnmel.data.images import binarize_mask, check_mask_size, read_image, read_mask_levels
from attnmel.data.leaks import DEFAULT_PHASH_DISTANCE, Match, Placed, find_matches, hash_pixels
from attnmel.data.readers import read_dataset
from attnmel.data.records import GROUP_COLUMNS, DatasetIndex
from attnmel.errors import DataError
from attnmel.io import progress_bar

SEVERITIES = ("error", "warning", "info")
TRAINING_SPLITS = frozenset({"train", "training"})
DEFAULT_MIN_SIZE = 224

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


@dataclass(eq=False)
class _Entry(Placed):
    """One sample as the checks place it (its dataset, its split), with what decoding it found."""

    dataset: int = 0
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
    entries = [_Entry(s, s.split, dataset=i) for i, index in enumerate(indexes) for split in index.splits.values()
               for s in split]
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
    matches = find_matches(entries, _leak_pair, pixels=decode, phash_distance=phash_distance)
    if decode:
        report.findings += _duplicates(matches, names)
    report.findings += _label_conflicts(entries, names, indexes[0].task.class_names)
    report.findings += _group_leaks(matches, names)
    report.findings += _listed_duplicates(indexes, entries, names)
    report.seconds = time.perf_counter() - started
    return report


def _entries(placed: Iterable[Placed]) -> list[_Entry]:
    """The check's own entries among what the detector hands back (all of them)."""
    return [entry for entry in placed if isinstance(entry, _Entry)]


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
    hash_pixels(entry, image)
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


def _leak_pair(a: Placed, b: Placed) -> bool:
    """Splits of one dataset must be disjoint; across datasets, training vs evaluation is a leak."""
    assert isinstance(a, _Entry) and isinstance(b, _Entry)  # the detector hands back what it was given
    if a.dataset == b.dataset:
        return a.sample.split != b.sample.split
    return (a.sample.split in TRAINING_SPLITS) != (b.sample.split in TRAINING_SPLITS)


def _duplicates(matches: list[Match], names: list[str]) -> list[Finding]:
    """The detector's photographs: a leak where the splits must be disjoint, else a duplicate within a
    dataset or an image two datasets share; near-identical ones as a leak warning or for information."""
    out = []
    for match in matches:
        paths = [e.sample.image_path for e in match.members]
        if match.kind == "same pixels":
            group = _entries(match.members)
            if match.leak:
                kind = "leak"
            else:
                kind = "duplicate_image" if len({e.dataset for e in group}) < len(group) else "shared_image"
            out.append(finding(kind, f"same pixels: {' = '.join(_where(e, names) for e in group)}", paths))
        elif match.kind == "near-identical":
            left, right = (_entries(part) for part in match.parts)
            where = f"{', '.join(_where(e, names) for e in left)} ~ {', '.join(_where(e, names) for e in right)}"
            out.append(finding("similar_leak" if match.leak else "similar_image",
                               f"{where} (perceptual distance {match.detail}); probably the same photograph "
                               "re-encoded or colour-processed", paths))
    return out


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


def _group_leaks(matches: list[Match], names: list[str]) -> list[Finding]:
    """One finding per lesion or patient whose images are on both sides of a split (``_leak_pair``)."""
    out = []
    for match in matches:
        if match.kind in GROUP_COLUMNS and match.leak:
            group = _entries(match.members)
            sides = sorted({f"{names[e.dataset]}/{e.sample.split}" for e in group})
            shown = ", ".join(_where(e, names) for e in group[:6]) + (", ..." if len(group) > 6 else "")
            out.append(finding("leak", f"{match.kind} {match.detail} has images in {' and '.join(sides)}: {shown}",
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
