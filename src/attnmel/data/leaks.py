"""The one leak detector, for a training run and for ``attnmel data check``: images that are one
photograph, one lesion or one patient, placed on two sides that must be disjoint.

Who places the images says which sides must be disjoint (a ``LeakRule``): a run puts its training
images against those it is judged on (validation, test, held-out shares), ``data check`` every split
of every dataset (two splits of one dataset, or one dataset's training split and another's
evaluation split). ``find_matches`` finds the images that belong together and says, by that rule,
which matches are leaks; a run refuses or drops them (``refuse_leaks``), data check reports them.

One photograph is found by two hashes of the decoded pixels: a content hash (identical pixels,
whatever the container or metadata) and a perceptual hash (``imagehash.phash`` with 256 bits, for
re-encoded, resized or colour-processed copies). Two images are called near-identical when their
perceptual hashes differ in at most ``phash_distance`` bits (default 38): on ISIC 2016 + 2017 every
pair up to 38 is the same photograph (re-encoded or colour-corrected copies under another ID), and
the first pair of different lesions appears at 40. One lesion or patient is a shared ``lesion_id``
or ``patient_id`` (``GROUP_COLUMNS``).
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image

from attnmel.data.images import read_image
from attnmel.data.records import GROUP_COLUMNS, DatasetIndex, Problem, Sample
from attnmel.errors import DataError

DEFAULT_PHASH_DISTANCE = 38
PHASH_BITS = 16  # hash_size: 16 x 16 = 256 bits

#: what makes images one: the same pixels, near-identical pixels, or a group column's value
MatchKind = str


@dataclass(eq=False)
class Placed:
    """An image where a run or a check puts it (``side``), with what its pixels hash to once
    ``hash_pixels`` has read it (None: not read, or unreadable)."""

    sample: Sample
    side: str = ""
    size: tuple[int, int] | None = None
    content: bytes | None = None
    #: PHASH_BITS**2 bits as uint64 words
    phash: np.ndarray | None = None


#: whether two images that are one photograph, lesion or patient are a leak where they are placed
LeakRule = Callable[[Placed, Placed], bool]


@dataclass(frozen=True)
class Match:
    """Images that are one photograph, lesion or patient. ``parts`` is one group (the same pixels, the
    same group value) or two (near-identical: each part's images have the same pixels)."""

    kind: MatchKind
    parts: tuple[tuple[Placed, ...], ...]
    leak: bool
    #: the group value, or the perceptual distance of the two parts
    detail: str = ""

    @property
    def members(self) -> list[Placed]:
        return [placed for part in self.parts for placed in part]

    def pairs(self) -> Iterator[tuple[Placed, Placed]]:
        """Every ordered pair of images this match makes one (across the two parts of a near-identical match)."""
        if len(self.parts) == 1:
            yield from ((a, b) for a in self.parts[0] for b in self.parts[0] if a is not b)
        else:
            left, right = self.parts
            yield from ((a, b) for a in left for b in right)
            yield from ((b, a) for a in left for b in right)


def hash_pixels(placed: Placed, image: Image.Image) -> None:
    """Fill ``placed``'s size, content hash and perceptual hash from its decoded ``image``."""
    import imagehash  # only a leak check pays for it

    placed.size = image.size
    placed.content = hashlib.blake2b(f"{image.size}".encode() + image.tobytes(), digest_size=16).digest()
    bits = imagehash.phash(image, hash_size=PHASH_BITS).hash.reshape(-1)
    placed.phash = np.packbits(bits).view(np.uint64)


def _hash_file(placed: Placed) -> Placed:
    try:
        hash_pixels(placed, read_image(placed.sample.image_path))
    except DataError:
        pass  # an unreadable image is found by the header checks; it matches nothing
    return placed


def hash_images(placed: Sequence[Placed], workers: int | None = None) -> None:
    """Decode and hash every image (in threads: PIL releases the GIL)."""
    with ThreadPoolExecutor(workers or min(8, os.cpu_count() or 1)) as pool:
        list(pool.map(_hash_file, placed))


def find_matches(placed: Sequence[Placed], rule: LeakRule, *, pixels: bool = True,
                 phash_distance: int = DEFAULT_PHASH_DISTANCE) -> list[Match]:
    """Every set of images that are one lesion or patient, and with ``pixels`` (the images hashed)
    one photograph, each marked a leak when ``rule`` says so of any pair of its images."""
    out = []
    for column in GROUP_COLUMNS:
        members: dict[str, list[Placed]] = defaultdict(list)
        for item in placed:
            value = item.sample.groups.get(column)
            if value is not None:
                members[value].append(item)
        out += [_match(column, (tuple(group),), rule, value) for value, group in members.items() if len(group) > 1]
    if not pixels:
        return out
    same: dict[bytes, list[Placed]] = defaultdict(list)
    for item in placed:
        if item.content is not None:
            same[item.content].append(item)
    unique = list(same.values())
    out += [_match("same pixels", (tuple(group),), rule) for group in unique if len(group) > 1]
    hashes = (np.stack([group[0].phash for group in unique])  # type: ignore[misc]  # a hashed image has its phash
              if unique else np.zeros((0, PHASH_BITS**2 // 64), np.uint64))
    out += [_match("near-identical", (tuple(unique[i]), tuple(unique[j])), rule, f"{distance}/{PHASH_BITS**2}")
            for i, j, distance in close_pairs(hashes, phash_distance)]
    return out


def _match(kind: MatchKind, parts: tuple[tuple[Placed, ...], ...], rule: LeakRule, detail: str = "") -> Match:
    match = Match(kind, parts, False, detail)
    return Match(kind, parts, any(rule(a, b) for a, b in match.pairs()), detail)


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


# ------------------------------------------------------------------------------------------ a training run

TRAINING = "training"


def _trained_against_judged(a: Placed, b: Placed) -> bool:
    return (a.side == TRAINING) != (b.side == TRAINING)


def run_matches(train: Sequence[Sample], judged: Mapping[str, Sequence[Sample]], *, pixels: bool = True,
                workers: int | None = None) -> list[Match]:
    """The leaks of a run: its training images against each side it is judged on."""
    placed = [Placed(s, TRAINING) for s in train] + [Placed(s, side) for side, samples in judged.items() for s in samples]
    if pixels:
        hash_images(placed, workers)
    return [match for match in find_matches(placed, _trained_against_judged, pixels=pixels) if match.leak]


def refuse_leaks(train: list[Sample], evaluated: Mapping[str, Sequence[Sample]], leaks: str = "refuse",
                 check_duplicates: bool = True, workers: int | None = None) -> tuple[list[Sample], list[str]]:
    """Training images that share a lesion or patient, or the same (or near-identical) pixels, with an
    image the run is judged on: stop the run (one line per pair, then the fix), or with
    ``leaks="drop"`` leave them out of training. Returns (training images, one line per image dropped)."""
    found: list[tuple[Sample, str]] = []
    for match in run_matches(train, evaluated, pixels=check_duplicates, workers=workers):
        found += _training_lines(match)
    if not found:
        return train, []
    lines = list(dict.fromkeys(line for _, line in found))
    if leaks == "drop":
        leaving = {id(sample) for sample, _ in found}
        return [s for s in train if id(s) not in leaving], lines
    shown = lines[:50] + ([f"... and {len(lines) - 50} more"] if len(lines) > 50 else [])
    raise DataError(None, "training images that are also judged on:\n  " + "\n  ".join(shown) + "\n",
                    "leave them out of training with --set data.leaks=drop, remove them from one side (attnmel "
                    "data check A B lists them all), or choose other datasets.")


def _training_lines(match: Match) -> list[tuple[Sample, str]]:
    """(training image, what it leaks) for each training image of a leaking match."""
    if match.kind in GROUP_COLUMNS:
        trained = [p for p in match.members if p.side == TRAINING]
        by_side: dict[str, list[str]] = defaultdict(list)
        for p in match.members:
            if p.side != TRAINING:
                by_side[p.side].append(p.sample.image_id)
        return [(a.sample, f"{match.kind} {match.detail} is in training ({a.sample.dataset}/{a.sample.image_id}) "
                           f"and in {side} ({', '.join(ids[:3])})") for side, ids in by_side.items() for a in trained]
    how = match.kind if match.kind == "same pixels" else f"near-identical (perceptual distance {match.detail})"
    return [(a.sample, f"{how} in {b.side}: training {a.sample.dataset}/{a.sample.image_id} ({a.sample.image_path}) = "
                       f"{b.sample.dataset}/{b.sample.image_id} ({b.sample.image_path})")
            for a, b in match.pairs() if a.side == TRAINING and b.side != TRAINING]


def official_leaks(index: DatasetIndex, train_name: str, train: list[Sample], val_name: str,
                   val: list[Sample]) -> list[Problem]:
    """Warnings for lesions or patients that the dataset's own splits put on both sides (a run on its
    official split goes on: the split is the dataset's, its metrics optimistic)."""
    problems = []
    matches = run_matches(train, {val_name: val}, pixels=False)
    for column in GROUP_COLUMNS:
        both = [m for m in matches if m.kind == column]
        if both:
            problems.append(Problem(index.root, "leak", f"{len(both)} {column} groups have images in both {train_name} "
                                                        f"and {val_name} (e.g. {both[0].detail}); validation metrics "
                                                        "are optimistic. data.split=grouped keeps groups together."))
    return problems


def near_identical_pairs(samples: Sequence[Sample], *, phash_distance: int = DEFAULT_PHASH_DISTANCE,
                         workers: int | None = None) -> list[tuple[str, str]]:
    """Image-ID pairs among ``samples`` with the same or near-identical pixels: photographs a grouped
    split keeps on one side."""
    placed = [Placed(s) for s in samples]
    hash_images(placed, workers)
    matches = find_matches(placed, lambda a, b: True, phash_distance=phash_distance)
    return sorted({(min(a.sample.image_id, b.sample.image_id), max(a.sample.image_id, b.sample.image_id))
                   for match in matches if match.kind not in GROUP_COLUMNS for a, b in match.pairs()
                   if a.sample.image_id != b.sample.image_id})
