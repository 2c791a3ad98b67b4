"""ISIC 2019: ``ISIC_2019_{Training,Test}_Input/`` (some files ``<id>_downsampled.jpg``), one-hot ground truth
with ``UNK``, metadata with ``lesion_id``."""

from __future__ import annotations

from pathlib import Path

from attnmel.data.readers.common import Reading, ReadSplits, folder_names
from attnmel.data.readers.isic2018 import read_one_hot_release
from attnmel.data.readers.registry import register_layout
from attnmel.data.records import TASKS, Task

ISIC2019_SPLITS = {"Training": "train", "Test": "test"}


def _detect(root: Path) -> bool:
    return any(n.startswith("ISIC_2019_") for n in folder_names(root))


@register_layout("isic2019", detect=_detect, sources=("isic2019",), expects="ISIC_2019_*", priority=50)
def read_isic2019(root: Path, task: Task, reading: Reading) -> ReadSplits:
    return read_one_hot_release(
        root, task, reading, ISIC2019_SPLITS, TASKS["isic2019-8class"].dataset_classes,
        data="ISIC_2019_{split}_Input", truth="ISIC_2019_{split}_GroundTruth.csv",
        groups="ISIC_2019_{split}_Metadata.csv", strip=("_downsampled",),
    )
