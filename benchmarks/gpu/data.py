"""The few images the smoke check (and --smoke's quality runs) train on."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from .settings import Settings


def subset_dataset(source: str | Path, target: Path, n_train: int, n_val: int) -> Path:
    """An ISIC 2017 folder with the first ``n`` images of each split, a third of them melanoma, with
    their lesion masks: the smoke check's data, and --smoke's."""
    from attnmel.data.readers import read_dataset

    done = target / "DONE"
    if done.is_file() and done.read_text() == f"{Path(source).resolve()} {n_train} {n_val}":
        return target
    shutil.rmtree(target, ignore_errors=True)
    index = read_dataset(source)
    for split, official, n in (("train", "Training", n_train), ("val", "Validation", n_val)):
        samples = index.split(split)
        melanoma = [x for x in samples if x.label == 1][: max(1, n // 3)]
        chosen = sorted(melanoma + [x for x in samples if x.label != 1][: n - len(melanoma)], key=lambda x: x.image_id)
        images, masks = target / f"ISIC-2017_{official}_Data", target / f"ISIC-2017_{official}_Part1_GroundTruth"
        images.mkdir(parents=True)
        masks.mkdir(parents=True)
        with open(target / f"ISIC-2017_{official}_Part3_GroundTruth.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["image_id", "melanoma", "seborrheic_keratosis"])
            for x in chosen:
                shutil.copy(x.image_path, images / f"{x.image_id}{x.image_path.suffix}")
                if x.mask_path is not None:
                    shutil.copy(x.mask_path, masks / f"{x.image_id}_segmentation.png")
                writer.writerow([x.image_id, float(x.label == 1), 0.0])
    done.write_text(f"{Path(source).resolve()} {n_train} {n_val}")
    return target


def smoke_data(s: Settings) -> Path:
    """The smoke check's few images (and, with --smoke, the quality runs')."""
    return subset_dataset(s.data, Path(s.work) / "smoke-data", 12 if s.smoke else 48, 8 if s.smoke else 32)
