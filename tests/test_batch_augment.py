"""The batch (device) augmentation gives the same samples as the per-sample v2 pipeline."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import v2

from attnmel.data.batch_augment import augment_geometry, center_params, normalize, train_params
from attnmel.data.dataset import IsicDataset
from attnmel.data.masks import RoiSpec
from attnmel.data.pipelines import DeviceBatches
from attnmel.data.readers import read_dataset
from attnmel.data.transforms import (
    NORMALIZATION_PRESETS,
    Preprocessing,
    eval_augment,
    geometry,
    train_augment,
)
from attnmel.training.distributed import Distributed

MEAN, STD = NORMALIZATION_PRESETS["isic2017"]
RESIZE, SIZE = 80, 64


@pytest.fixture(scope="module")
def samples(request):
    from .conftest import SAMPLE

    return read_dataset(SAMPLE).split("train")[:12]


def _keys(count: int, offset: int = 0) -> list[tuple[int, int]]:
    return [(i % count, 7919 * i + offset) for i in range(3 * count)]


@pytest.mark.slow
def test_device_batches_equal_the_per_sample_pipeline(samples):
    """Real images and lesion masks, 36 keys: every output equals the DataLoader path's."""
    roi = RoiSpec("lesion")
    prep = Preprocessing(0.8, RESIZE, SIZE, MEAN, STD)
    keys = _keys(len(samples))
    reference = IsicDataset(samples, v2.Compose([geometry(RESIZE, 0.8), train_augment(SIZE, MEAN, STD)]), roi)
    uint8_view = IsicDataset(samples, v2.Compose([geometry(RESIZE, 0.8), *train_augment(SIZE, MEAN, STD).transforms[:-2]]), roi)
    device = DeviceBatches(samples, prep, roi, torch.device("cpu"))
    batches = list(device.train(keys, batch_size=8))
    assert [len(b["index"]) for b in batches] == [8, 8, 8, 8, 4]
    out = {k: torch.cat([b[k] for b in batches]) for k in ("image", "mask", "has_mask", "label", "index")}
    params = train_params([seed for _, seed in keys], RESIZE, SIZE)
    pixels = augment_geometry(device.images[[i for i, _ in keys]], params, SIZE)
    for n, key in enumerate(keys):
        expected, expected_uint8 = reference[key], uint8_view[key]
        assert torch.equal(pixels[n], expected_uint8["image"]), f"key {key}: geometry differs"
        assert torch.equal(out["mask"][n], expected["mask"]), f"key {key}: mask differs"
        torch.testing.assert_close(out["image"][n], expected["image"], rtol=0, atol=1e-6)
        assert out["has_mask"][n] == expected["has_mask"] and out["label"][n] == expected["label"]
        assert out["index"][n] == key[0]
    assert out["has_mask"].any() and out["mask"].sum() > 0


def test_params_cover_every_rotation_and_flip():
    params = train_params(range(200), RESIZE, SIZE)
    combos = set((params.quarter_turns * 4 + params.hflip.long() * 2 + params.vflip.long()).tolist())
    assert combos == set(range(16))
    assert 0 <= int(params.top.min()) and int(params.top.max()) <= RESIZE - SIZE and params.left.unique().numel() > 5


def test_evaluation_view_equals_eval_augment(samples):
    prep = Preprocessing(0.8, RESIZE, SIZE, MEAN, STD)
    reference = IsicDataset(samples, v2.Compose([geometry(RESIZE, 0.8), eval_augment(SIZE, MEAN, STD)]))
    device = DeviceBatches(samples, prep, None, torch.device("cpu"))
    images = torch.cat([b["image"] for b in device.evaluate(range(len(samples)), batch_size=5)])
    for i in range(len(samples)):
        torch.testing.assert_close(images[i], reference[i]["image"], rtol=0, atol=1e-6)


def test_normalize_matches_torchvision():
    pixels = torch.randint(0, 256, (4, 3, 9, 9), dtype=torch.uint8)
    expected = v2.Normalize(MEAN, STD)(v2.ToDtype(torch.float32, scale=True)(pixels))
    torch.testing.assert_close(normalize(pixels, MEAN, STD), expected, rtol=0, atol=1e-6)
    centre = augment_geometry(pixels, center_params(4, 9, 5), 5)
    assert torch.equal(centre, pixels[:, :, 2:7, 2:7])


@pytest.mark.parametrize("world_size", [1, 2, 4])
def test_shards_make_up_the_global_batches(world_size):
    keys = list(range(23))
    global_batch = 8
    shards = [Distributed(rank, world_size).shard(keys, global_batch) for rank in range(world_size)]
    per_rank = global_batch // world_size
    for step in range(2):
        together = sorted(k for shard in shards for k in shard[step * per_rank:(step + 1) * per_rank])
        assert together == keys[step * global_batch:(step + 1) * global_batch]
    assert sum(len(s) for s in shards) == 16 and len({len(s) for s in shards}) == 1
