"""Every registered layout, read from a small folder built with its official names from real images:
detected by its own detector only, counts per split and class, masks paired by ID, every image decodes.
A new layout without an entry in ``BUILT`` fails ``test_every_registered_layout_is_built_here``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from attnmel.data.images import read_image
from attnmel.data.readers import LAYOUT_SOURCES, LAYOUTS, Layout, detect_layout, layout_entry, read_dataset
from attnmel.data.readers.registry import register_layout

from .conftest import make_isic2017_subset
from .layouts import (
    make_derm7pt,
    make_ham10000,
    make_isic2016,
    make_isic2018,
    make_isic2019,
    make_isic2020,
    make_isic2024,
    make_isic_cli,
    make_manifest,
    make_ph2,
)


@dataclass(frozen=True)
class Built:
    """How to build a layout under a folder, the path to give ``--data``, and what reading it must find."""

    build: Callable[[Path], object]
    #: split -> (images, melanoma) for task ``melanoma``
    counts: dict[str, tuple[int, int]]
    #: images with a lesion mask, over all splits
    masks: int = 0
    #: the path ``--data`` names, relative to the build folder
    data: str = "."


BUILT: dict[str, Built] = {
    "isic2017": Built(lambda root: make_isic2017_subset(root, n_train=6, n_val=3), {"train": (6, 2), "val": (3, 1)}, 9),
    "isic2016": Built(lambda root: make_isic2016(root, ["benign", "malignant", "benign"], ["1", "0"]),
                      {"train": (3, 1), "test": (2, 1)}, 5),
    "ham10000": Built(lambda root: make_ham10000(root, [("mel", "L1"), ("nv", "L1"), ("bkl", "L2")]),
                      {"train": (3, 1)}, 3),
    "isic2018": Built(lambda root: make_isic2018(root, {"Training": [("MEL", None), ("NV", None), ("DF", None)],
                                                        "Validation": [("MEL", None), ("BCC", None)]}),
                      {"train": (3, 1), "val": (2, 1)}, 3),
    "isic2019": Built(lambda root: make_isic2019(root, [("MEL", "L1"), ("NV", None), ("SCC", "L2")]), {"train": (3, 1)}),
    "isic2020": Built(lambda root: make_isic2020(root, [("malignant", "P1", "L1"), ("benign", "P1", "L2")]),
                      {"train": (2, 1)}),
    "isic-cli": Built(lambda root: make_isic_cli(root, ["Melanoma Invasive", "Nevus", "Seborrheic keratosis"]),
                      {"all": (3, 1)}),
    "isic2024": Built(lambda root: make_isic2024(root / "isic-2024-challenge", [
        (1, "IP_1", "IL_1", "Malignant::Malignant melanocytic proliferations (Melanoma)::Melanoma Invasive"),
        (0, "IP_1", None, "Benign"), (1, "IP_2", "IL_2", "Malignant::Malignant adnexal epithelial proliferations"
                                                          " - Follicular::Basal cell carcinoma")], test=True),
        {"train": (3, 1)}),
    "ph2": Built(lambda root: make_ph2(root, ["0", "1", "2", "2"]), {"test": (4, 2)}, 4),
    "derm7pt": Built(lambda root: make_derm7pt(root, ["melanoma (in situ)", "clark nevus", "seborrheic keratosis"],
                                               {"train": [0, 1], "test": [2]}), {"train": (2, 1), "test": (1, 0)}),
    "derm7pt-clinic": Built(lambda root: make_derm7pt(root, ["melanoma", "blue nevus"]), {"all": (2, 1)}),
    "manifest": Built(lambda root: make_manifest(root, [("melanoma", "train"), ("0", "train"), ("1", "val")]),
                      {"train": (2, 1), "val": (1, 1)}),
}


def test_every_registered_layout_is_built_here():
    assert sorted(BUILT) == sorted(LAYOUTS)


def test_the_registry_is_the_one_source_of_choices():
    from typing import get_args

    assert get_args(Layout) == LAYOUTS
    assert LAYOUT_SOURCES == {name: layout_entry(name).sources for name in LAYOUTS}
    with pytest.raises(ValueError, match="registered twice"):
        register_layout("manifest", detect=None, sources=None)(lambda root, task, reading: {})


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("layouts")
    paths = {}
    for name, spec in BUILT.items():
        spec.build(root / name)
        paths[name] = root / name / spec.data
    return paths


@pytest.mark.parametrize("layout", LAYOUTS)
def test_layout_is_detected_by_its_own_detector_only(layout, built):
    if layout_entry(layout).detect is None:  # a variant chosen by name (derm7pt-clinic)
        assert detect_layout(built[layout]) != layout
        return
    assert detect_layout(built[layout]) == layout
    for other in LAYOUTS:
        entry = layout_entry(other)
        if other != layout and entry.detect is not None and entry.priority < layout_entry(layout).priority:
            assert not entry.detect(built[layout]), f"{other} claims a {layout} folder"


@pytest.mark.parametrize("layout", LAYOUTS)
def test_layout_reads_counts_masks_and_names_its_dataset(layout, built):
    spec = BUILT[layout]
    index = read_dataset(built[layout], layout=None if layout_entry(layout).detect else layout)
    assert index.layout == layout
    summary = index.summary()["splits"]
    assert {split: (s["images"], s["classes"]["melanoma"]) for split, s in summary.items()} == spec.counts
    assert sum(s["masks_present"] for s in summary.values()) == spec.masks
    samples = [sample for split in index.splits.values() for sample in split]
    assert {sample.dataset for sample in samples} == {layout}
    assert len({sample.image_id for sample in samples}) == len(samples)
    for sample in samples:
        if sample.mask_path is not None:
            assert sample.image_id in sample.mask_path.name
    assert min(read_image(samples[0].image_path).size) >= 16


def test_config_validates_data_layout_against_the_registry():
    from attnmel.config import load_config
    from attnmel.errors import ConfigError

    for layout in ("ph2", "isic2024", "derm7pt-clinic"):
        assert load_config("isic2017/attnmel-lesion", [f"data.layout={layout}"]).data.layout == layout
    with pytest.raises(ConfigError, match="data.layout must be .*'ph2'.*not 'ph3'"):
        load_config("isic2017/attnmel-lesion", ["data.layout=ph3"])
