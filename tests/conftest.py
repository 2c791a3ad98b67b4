"""Shared fixtures: paths to the real datasets (skipped when absent) and small layouts built on the fly."""

from __future__ import annotations

import os

# Idle OpenMP threads sleep instead of spinning: on a small, shared CPU spinning threads slow
# torch down by an order of magnitude. Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ATTNMEL_SHARED", REPO.parent / "shared"))
ISIC2017 = SHARED / "data" / "isic2017"
ISIC2016 = SHARED / "data" / "isic2016"
MOBILENET_WEIGHTS = SHARED / "weights" / "mobilenet_v2_imagenet_features.pth"
SAMPLE = REPO / "src" / "attnmel" / "sample_data" / "isic2017"


#: The smallest run that trains for real: MobileNetV2 from random init at 64 px, one short epoch.
TINY_CONFIG = {
    "model.backbone": "mobilenet_v2", "model.weights": "null", "data.resize": "72", "data.image_size": "64",
    "data.num_workers": "0", "train.batch_size": "4", "train.eval_batch_size": "8", "train.epochs": "1",
    "train.passes_per_epoch": "1", "train.threads": "1",
}


def tiny(*changes: str) -> list[str]:
    """``--set`` overrides for a tiny run: ``TINY_CONFIG`` with ``changes`` (``key=value``) applied."""
    values = dict(TINY_CONFIG)
    for change in changes:
        key, value = change.split("=", 1)
        values[key] = value
    return [f"{key}={value}" for key, value in values.items()]


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    yield


@pytest.fixture
def isic2017() -> Path:
    if not (ISIC2017 / "ISIC-2017_Training_Data").is_dir():
        pytest.skip(f"real ISIC 2017 data not found at {ISIC2017} (set ATTNMEL_SHARED to the shared folder)")
    return ISIC2017


@pytest.fixture
def isic2016() -> Path:
    if not (ISIC2016 / "ISBI2016_ISIC_Part3_Training_Data").is_dir():
        pytest.skip(f"real ISIC 2016 data not found at {ISIC2016} (set ATTNMEL_SHARED to the shared folder)")
    return ISIC2016


@pytest.fixture
def mobilenet_weights() -> Path:
    if not MOBILENET_WEIGHTS.is_file():
        pytest.skip(f"offline ImageNet MobileNetV2 weights not found at {MOBILENET_WEIGHTS}")
    return MOBILENET_WEIGHTS


@pytest.fixture
def sample_data() -> Path:
    """The 60-image sample bundled with the package (always present)."""
    return SAMPLE


def sample_rows(split: str = "Training") -> list[dict[str, str]]:
    with open(SAMPLE / f"ISIC-2017_{split}_Part3_GroundTruth.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def subset_rows(split: str, n: int) -> list[dict[str, str]]:
    """The first ``n`` sample rows with a third of them melanoma, in ID order (both classes present)."""
    rows = sample_rows(split)
    melanoma = [r for r in rows if r["melanoma"] == "1.0"][: max(1, n // 3)]
    others = [r for r in rows if r["melanoma"] != "1.0"][: n - len(melanoma)]
    return sorted(melanoma + others, key=lambda r: r["image_id"])


def write_csv(path: Path, header: list[str] | None, rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        if header:
            writer.writerow(header)
        writer.writerows(rows)
    return path


def make_isic2017_subset(root: Path, n_train: int = 12, n_val: int = 6, masks: bool = True) -> Path:
    """An official-layout ISIC 2017 folder with the first images of the bundled sample."""
    for official, n in (("Training", n_train), ("Validation", n_val)):
        rows = subset_rows(official, n)
        data = root / f"ISIC-2017_{official}_Data"
        gt = root / f"ISIC-2017_{official}_Part1_GroundTruth"
        data.mkdir(parents=True, exist_ok=True)
        gt.mkdir(parents=True, exist_ok=True)
        for row in rows:
            image_id = row["image_id"]
            shutil.copy(SAMPLE / f"ISIC-2017_{official}_Data/{image_id}.jpg", data)
            if masks:
                shutil.copy(SAMPLE / f"ISIC-2017_{official}_Part1_GroundTruth/{image_id}_segmentation.png", gt)
        write_csv(
            root / f"ISIC-2017_{official}_Part3_GroundTruth.csv",
            ["image_id", "melanoma", "seborrheic_keratosis"],
            [[r["image_id"], r["melanoma"], r["seborrheic_keratosis"]] for r in rows],
        )
    return root


def synthetic_image(path: Path, size=(64, 48), mode="RGB", seed=0) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode in ("L", "RGB", "RGBA"):
        channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
        array = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
        Image.fromarray(array.squeeze(-1) if channels == 1 else array, mode=mode).save(path)
    elif mode == "I;16":
        array = rng.integers(0, 65536, (size[1], size[0]), dtype=np.uint16)
        Image.fromarray(array).save(path)
    else:
        raise ValueError(mode)
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A real AttnMel-CNN checkpoint (MobileNetV2, 64 px) trained for one epoch on 8 sample images.

    For tests of what uses a checkpoint (export, service): fast, not a good model.
    """
    from attnmel.config import load_config
    from attnmel.training.loop import train

    root = tmp_path_factory.mktemp("tiny-checkpoint")
    data = make_isic2017_subset(root / "data", n_train=8, n_val=6)
    config = load_config("isic2017/attnmel-lesion", tiny())
    result = train(config, data, root / "run", progress=False, log=lambda _: None)
    torch.set_num_threads(2)
    return result.best_checkpoint


def benchmark_script(name: str, folder: str = "benchmarks"):
    """Import ``<folder>/<name>.py`` as a module for a test (yielded; removed from sys.modules after)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(name, REPO / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)
