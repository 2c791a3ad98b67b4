"""Prepare what the GPU suite needs beside the code, in ignored folders that travel with it.

    python benchmarks/gpu_prepare.py             # .data/gpu-suite: ISIC 2017 train/val + weights; size check
    python benchmarks/gpu_prepare.py --wheels    # also the wheels of benchmarks/gpu_wheels.txt into .whl/
    python benchmarks/gpu_prepare.py --target DIR  # elsewhere (the suite's --data and --weights then name it)

The GPU machine has no package registry and no ``../shared``, and only the working tree travels
(64 MiB with the folders a run carries). This copies, from ``--shared``:

- ``.data/gpu-suite/isic2017/``: the ISIC 2017 training and validation images, their lesion masks
  and the Part 3 label tables (the dermoscopic-feature masks are left out: the suite uses the
  lesion region only);
- ``.data/gpu-suite/mobilenet_v2_imagenet_features.pth``: the ImageNet MobileNetV2 weights
  (checked against their published SHA-256);

then adds up what would travel (tracked and untracked-not-ignored files, plus the carried
folders) and fails if it is over the limit. Copies are skipped when the file is already there with
the same size and time, so a second run is quick. ``--wheels`` downloads each ``NAME==VERSION`` of
``benchmarks/gpu_wheels.txt`` for Python 3.12 manylinux x86-64 (``pip download --no-deps
--only-binary=:all:``, here, where the registry is reachable; never on the GPU machine) and removes
wheels that the list no longer names.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET = REPO / ".data" / "gpu-suite"
WHEELS = REPO / ".whl"
WHEEL_LIST = REPO / "benchmarks" / "gpu_wheels.txt"
WEIGHTS_NAME = "mobilenet_v2_imagenet_features.pth"
#: published in ../shared/weights/README.md
WEIGHTS_SHA256 = "3e26d31cdedf2ea2ed69cc3c84a21c86902372a12e10e6d0ece4f6012fffdc97"
LIMIT = 64 * 2**20
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64", "manylinux_2_24_x86_64", "manylinux_2_31_x86_64", "manylinux_2_34_x86_64",
             "manylinux_2_35_x86_64"]
SPLITS = ("Training", "Validation")


class PrepareError(Exception):
    """One line: what is wrong and how to fix it."""


def _copy(source: Path, target: Path) -> bool:
    """Copy unless ``target`` already has the same size and modification time; True when copied."""
    if target.is_file():
        a, b = source.stat(), target.stat()
        if a.st_size == b.st_size and int(a.st_mtime) == int(b.st_mtime):
            return False
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.copy2(source, tmp)
    tmp.replace(target)
    return True


def prepare_data(shared: Path, target: Path) -> dict:
    """ISIC 2017 images, lesion masks and labels of both splits, and the weights, into ``target``."""
    source = shared / "data" / "isic2017"
    if not (source / "ISIC-2017_Training_Data").is_dir():
        raise PrepareError(f"{source}: no ISIC 2017 copy there; pass --shared with the folder that holds data/isic2017.")
    weights = shared / "weights" / WEIGHTS_NAME
    if not weights.is_file():
        raise PrepareError(f"{weights}: the ImageNet MobileNetV2 weights are missing; pass --shared with the folder "
                           "that holds weights/.")
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    if digest != WEIGHTS_SHA256:
        raise PrepareError(f"{weights}: SHA-256 {digest[:12]}... is not the published {WEIGHTS_SHA256[:12]}...; "
                           "the file changed, check ../shared/weights/README.md.")
    counts = {"images": 0, "masks": 0, "copied": 0}
    keep: set[Path] = set()
    for split in SPLITS:
        table = source / f"ISIC-2017_{split}_Part3_GroundTruth.csv"
        if not table.is_file():
            raise PrepareError(f"{table}: label table missing; the shared copy is incomplete.")
        with open(table, newline="") as handle:
            ids = [row["image_id"] for row in csv.DictReader(handle)]
        pairs = [(table, target / "isic2017" / table.name)]
        for image_id in ids:
            image = source / f"ISIC-2017_{split}_Data" / f"{image_id}.jpg"
            if not image.is_file():
                raise PrepareError(f"{image}: listed in {table.name} but missing.")
            pairs.append((image, target / "isic2017" / f"ISIC-2017_{split}_Data" / image.name))
            mask = source / f"ISIC-2017_{split}_Part1_GroundTruth" / f"{image_id}_segmentation.png"
            if mask.is_file():
                pairs.append((mask, target / "isic2017" / f"ISIC-2017_{split}_Part1_GroundTruth" / mask.name))
                counts["masks"] += 1
        counts["images"] += len(ids)
        for a, b in pairs:
            counts["copied"] += _copy(a, b)
            keep.add(b)
    counts["copied"] += _copy(weights, target / WEIGHTS_NAME)
    keep.add(target / WEIGHTS_NAME)
    stale = [p for p in target.rglob("*") if p.is_file() and p not in keep]
    for path in stale:
        path.unlink()
    counts["removed"] = len(stale)
    return counts


def wheel_list(path: Path = WHEEL_LIST) -> list[str]:
    """The ``NAME==VERSION`` lines of ``gpu_wheels.txt`` (comments and blank lines skipped)."""
    pins = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep or not name.strip() or not version.strip() or " " in line:
            raise PrepareError(f"{path}:{number}: {line!r} is not NAME==VERSION (one exact pin a line).")
        pins.append(f"{name.strip()}=={version.strip()}")
    return pins


def _wheel_name(pin: str) -> str:
    """A wheel file name's first field for a project name (PEP 427: runs of -_. become _)."""
    import re

    return re.sub(r"[-_.]+", "_", pin.split("==")[0]).lower()


def download_wheels(pins: list[str], folder: Path) -> list[Path]:
    """Each pin as a Python 3.12 manylinux x86-64 wheel in ``folder``; others there are removed."""
    folder.mkdir(exist_ok=True)

    def present() -> set[tuple[str, str]]:  # wheel names keep the project's capitals (ImageHash-4.3.2-...)
        return {(w.name.split("-")[0].lower(), w.name.split("-")[1]) for w in folder.glob("*.whl")}

    for pin in pins:
        name, version = pin.split("==")
        if (_wheel_name(pin), version) in present():
            continue
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                   "--python-version", "3.12", "--implementation", "cp", "-d", str(folder), pin]
        for platform in PLATFORMS:
            command[6:6] = ["--platform", platform]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise PrepareError(f"pip could not download {pin} for Python 3.12 manylinux x86-64: "
                               f"{(done.stderr.strip().splitlines() or ['no output'])[-1]}")
    wanted = {(_wheel_name(p), p.split("==")[1]) for p in pins}
    kept = []
    for wheel in sorted(folder.glob("*.whl")):
        name, version = wheel.name.split("-")[:2]
        if (name.lower(), version) in wanted:
            kept.append(wheel)
        else:
            wheel.unlink()
    return kept


def shown(path: Path) -> str:
    """A path as the device tool's ``carry`` names it: relative to the repository where it is inside."""
    path = path.resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def travelling_size(repo: Path, carried: list[Path]) -> dict[str, int]:
    """Bytes that a device run sends: tracked and untracked-not-ignored files, and each carried folder."""
    listed = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True).stdout.decode().split("\0")
    code = sum((repo / name).stat().st_size for name in listed if name and (repo / name).is_file()
               and not (repo / name).is_symlink())
    sizes = {"code": code}
    for folder in carried:
        sizes[shown(folder)] = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", default=str(REPO.parent / "shared"), help="folder holding data/isic2017 and weights/")
    parser.add_argument("--wheels", action="store_true", help=f"download {WHEEL_LIST.name} into .whl/")
    parser.add_argument("--target", type=Path, default=TARGET, help=f"where the copies go (default {shown(TARGET)})")
    args = parser.parse_args(argv)
    try:
        counts = prepare_data(Path(args.shared), args.target)
        print(f"{shown(args.target)}: {counts['images']} images, {counts['masks']} lesion masks and the weights "
              f"({counts['copied']} files copied, {counts['removed']} stale removed)")
        carried = [args.target]
        if args.wheels:
            pins = wheel_list()
            kept = download_wheels(pins, WHEELS)
            print(f".whl: {len(kept)} wheels for {len(pins)} pins in {WHEEL_LIST.name}" +
                  ("" if pins else " (the suite needs none today)"))
        if WHEELS.is_dir() and any(WHEELS.glob("*.whl")):
            carried.append(WHEELS)
    except PrepareError as exc:
        print(f"gpu_prepare: {exc}", file=sys.stderr)
        return 2
    sizes = travelling_size(REPO, carried)
    total = sum(sizes.values())
    print("travels with a run: " + ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in sizes.items())
          + f"; total {total / 2**20:.1f} of {LIMIT / 2**20:.0f} MiB")
    print("carry: " + ", ".join(f'"{shown(p)}"' for p in carried))
    if total > LIMIT:
        print(f"gpu_prepare: {total / 2**20:.1f} MiB is over the {LIMIT / 2**20:.0f} MiB a run may send; "
              "leave untracked files out of the tree or carry less", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
