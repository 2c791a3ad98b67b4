"""-Dermo and -Bkg runs on real images: the right samples carry a prior, in both dermoscopic formats."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from attnmel.checkpoints.format import read_metadata
from attnmel.config import load_config
from attnmel.training.loop import train

from .conftest import SAMPLE, make_isic2017_subset, tiny


@pytest.fixture(scope="module")
def prior_data(tmp_path_factory):
    """8 real training images: 5 with ISIC 2018 attribute PNGs, 1 with ISIC 2017 Part 2 superpixels, 2 with
    no dermoscopic annotation; 3 of the 8 (with attribute PNGs) lose their lesion mask."""
    root = make_isic2017_subset(tmp_path_factory.mktemp("priors") / "data", n_train=8, n_val=4)
    train_ids = sorted(p.stem for p in (root / "ISIC-2017_Training_Data").glob("*.jpg"))
    attributes = root / "ISIC2018_Task2_Training_GroundTruth_v3"
    attributes.mkdir()
    for image_id in train_ids[:5]:
        for png in (SAMPLE / attributes.name).glob(f"{image_id}_attribute_*.png"):
            shutil.copy(png, attributes)
    # ISIC 2017 Part 2 for the sixth: 64 px tiles as superpixels, tile 0 marked as streaks
    image_id = train_ids[5]
    width, height = Image.open(root / "ISIC-2017_Training_Data" / f"{image_id}.jpg").size
    tiles = (np.arange(height)[:, None] // 64) * ((width + 63) // 64) + np.arange(width)[None, :] // 64
    rgb = np.stack([tiles & 0xFF, (tiles >> 8) & 0xFF, (tiles >> 16) & 0xFF], axis=-1).astype(np.uint8)
    Image.fromarray(rgb, mode="RGB").save(root / "ISIC-2017_Training_Data" / f"{image_id}_superpixels.png")
    part2 = root / "ISIC-2017_Training_Part2_GroundTruth"
    part2.mkdir()
    count = int(tiles.max()) + 1
    flags = {name: [0] * count for name in ("pigment_network", "negative_network", "milia_like_cyst", "streaks")}
    flags["streaks"][0] = 1
    (part2 / f"{image_id}_features.json").write_text(json.dumps(flags))
    for image_id in train_ids[:3]:
        (root / "ISIC-2017_Training_Part1_GroundTruth" / f"{image_id}_segmentation.png").unlink()
    return root


@pytest.mark.parametrize(("preset", "roi", "with_prior"), [("attnmel-dermo", "dermo", 6), ("attnmel-bkg", "background", 5)])
def test_regularised_rows_report_how_many_samples_carry_a_prior(prior_data, tmp_path, preset, roi, with_prior):
    lines: list[str] = []
    result = train(load_config(f"isic2017/{preset}", tiny()), prior_data, tmp_path / preset, progress=False,
                   log=lines.append)
    meta = read_metadata(result.best_checkpoint)
    assert meta.training.prior["roi"] == roi
    assert meta.training.data["train"]["with_prior"] == with_prior
    assert f"attention prior '{roi}': {with_prior} of 8 training images carry a region" in "\n".join(lines)
    history = pd.read_csv(tmp_path / preset / "metrics.csv")
    assert history.loc[0, "train_prior_loss"] > 0 and history.loc[0, "train_prior_samples"] > 0
