"""Peak memory while streaming an ISIC 2024 (SLICE-3D) style HDF5 through the input pipeline.

Builds ``--images`` entries (default 20,000) of ~130 px JPEG crops of real ISIC images into
``train-image.hdf5`` with a ``train-metadata.csv``, reads it with ``read_dataset`` and decodes every
image once through ``IsicDataset`` and a DataLoader with ``--workers`` workers (decoding in the
workers, each with its own HDF5 handle), as training and evaluation do. Peak memory is the largest
sum of the proportional set size (PSS, /proc, Linux: a page the forked workers share with this
process counts once) of this process and its workers, sampled every 20 ms; "before" is the same sum
after the imports (torch alone is most of it), so the difference is what streaming the file cost.

    python benchmarks/isic2024_memory.py                       # 20,000 images, 2 workers
    python benchmarks/isic2024_memory.py --images 2000 --json  # one JSON line instead of the table
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms import v2

REPO = Path(__file__).resolve().parents[1]
SOURCES = (Path(os.environ.get("ATTNMEL_SHARED", REPO.parent / "shared")) / "data" / "isic2017" / "ISIC-2017_Training_Data",
           REPO / "src" / "attnmel" / "sample_data" / "isic2017" / "ISIC-2017_Training_Data")


def build(root: Path, n: int, side: int = 130, seed: int = 0) -> Path:
    """``n`` crops of real ISIC images (several per source image, at different places) into ``root``."""
    sources = sorted(next(folder for folder in SOURCES if folder.is_dir()).glob("ISIC_*.jpg"))
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    with h5py.File(root / "train-image.hdf5", "w") as handle:
        for k in range(n):
            with Image.open(sources[k % len(sources)]) as image:
                image.draft("RGB", (4 * side, 4 * side))
                image = image.convert("RGB")
                x, y = (int(rng.integers(0, max(1, s - 2 * side))) for s in image.size)
                crop = image.crop((x, y, x + 2 * side, y + 2 * side)).resize((side, side))
            buffer = io.BytesIO()
            crop.save(buffer, "JPEG", quality=90)
            isic_id = f"ISIC_{k:07d}"
            handle.create_dataset(isic_id, data=np.void(buffer.getvalue()))
            rows.append(f"{isic_id},{int(k % 50 == 0)},IP_{k // 7:06d},{k % 90},female\n")
    (root / "train-metadata.csv").write_text("isic_id,target,patient_id,age_approx,sex\n" + "".join(rows))
    return root


def _pss_mb(pid: int) -> float:
    """Proportional set size: pages shared by the forked workers (torch itself) are counted once in the sum."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            return next(int(line.split()[1]) for line in rollup if line.startswith("Pss:")) / 1024
    except (OSError, StopIteration):
        return 0.0


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return found


class PeakMemory:
    """Samples the summed PSS of this process and its children until stopped."""

    def __init__(self, interval: float = 0.02):
        self.peak_mb, self.interval, self._stop = 0.0, interval, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        pid = os.getpid()
        while not self._stop.is_set():
            total = _pss_mb(pid) + sum(_pss_mb(child) for child in _children(pid))
            self.peak_mb = max(self.peak_mb, total)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def measure(root: Path, workers: int, batch_size: int = 64, size: int = 224) -> dict:
    """Read the dataset and decode every image once; what it cost."""
    from attnmel.data.dataset import IsicDataset
    from attnmel.data.readers import read_dataset

    transform = v2.Compose([v2.Resize((size, size), antialias=True), v2.ToDtype(torch.float32, scale=True)])
    before = _pss_mb(os.getpid())
    with PeakMemory() as memory:
        start = time.perf_counter()
        index = read_dataset(root, "isic2024-binary")
        samples = index.split("train")
        loader = DataLoader(IsicDataset(samples, transform), batch_size=batch_size, num_workers=workers)
        decoded = sum(len(batch["label"]) for batch in loader)
        seconds = time.perf_counter() - start
    return {"images": decoded, "listed": len(samples), "hdf5_mb": round((root / "train-image.hdf5").stat().st_size / 2**20, 1),
            "workers": workers, "seconds": round(seconds, 1), "images_per_s": round(decoded / seconds, 1),
            "before_mb": round(before), "peak_mb": round(memory.peak_mb)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--folder", type=Path, help="build here (default: a temporary folder, removed after)")
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of the table")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        root = args.folder or Path(scratch) / "isic2024"
        started = time.perf_counter()
        if not (root / "train-image.hdf5").is_file():
            build(root, args.images)
        built_s = time.perf_counter() - started
        result = measure(root, args.workers) | {"build_s": round(built_s, 1)}
    if args.json:
        print(json.dumps(result))
    else:
        print("| images | HDF5 MB | workers | read + decode s | images/s | PSS before MB | peak PSS MB (main + workers) |")
        print("|---|---|---|---|---|---|---|")
        print(f"| {result['images']} | {result['hdf5_mb']} | {result['workers']} | {result['seconds']} | "
              f"{result['images_per_s']} | {result['before_mb']} | {result['peak_mb']} |")
    return 0 if result["images"] == result["listed"] else 1


if __name__ == "__main__":
    sys.exit(main())
