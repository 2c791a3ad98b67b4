"""The decode-once cache: same pixels as decoding, reused when nothing changed, rebuilt when a file did."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from attnmel.cli import main
from attnmel.data.cache import GeometryCache, decode_geometry
from attnmel.data.masks import RoiSpec
from attnmel.data.readers import read_dataset
from attnmel.errors import DataError

from .conftest import make_isic2017_subset

LESION = RoiSpec("lesion")


@pytest.fixture
def small(tmp_path):
    data = make_isic2017_subset(tmp_path / "ds", n_train=5, n_val=2)
    return data, read_dataset(data).split("train"), GeometryCache(tmp_path / "cache", resize=72, crop_ratio=0.8)


def _assert_same_as_decoding(cached, samples, roi):
    for sample in samples:
        image, mask, has = cached.load(sample)
        ref_image, ref_mask, ref_has = decode_geometry(sample, roi, 72, 0.8)
        assert torch.equal(image, ref_image) and image.dtype == torch.uint8 and image.shape == (3, 72, 72)
        assert has == ref_has
        if has:
            assert torch.equal(mask, ref_mask)


def test_cache_holds_the_decoded_geometry_and_is_reused(small):
    _, samples, cache = small
    first = cache.prepare(samples, LESION)
    assert (first.images_built, first.regions_built) == (5, 5)
    _assert_same_as_decoding(first, samples, LESION)
    again = cache.prepare(samples, LESION)
    assert (again.images_built, again.regions_built, again.removed) == (0, 0, 0)
    assert again.items == first.items
    # plain .npy (no pickle) and an index that records each source's content hash
    entry = first.items[str(samples[0].image_path)].image
    assert np.load(entry, allow_pickle=False).shape == (3, 72, 72)
    index = json.loads(cache.index_path.read_text())
    assert len(index["sources"]) == 5 and all(len(r["sha256"]) == 64 for r in index["sources"].values())


def test_a_changed_image_gets_a_new_entry_and_the_old_one_is_removed(small):
    _, samples, cache = small
    first = cache.prepare(samples, LESION)
    changed = samples[0]
    old_entry = first.items[str(changed.image_path)].image
    old_region = first.items[str(changed.image_path)].region
    with Image.open(changed.image_path) as image:
        image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(changed.image_path, quality=95)
    second = cache.prepare(samples, LESION)
    assert (second.images_built, second.regions_built) == (1, 1)
    assert second.removed == 2 and not old_entry.exists() and not old_region.exists()
    assert second.items[str(changed.image_path)].image != old_entry
    _assert_same_as_decoding(second, samples, LESION)


def test_a_changed_mask_rebuilds_only_its_region(small):
    _, samples, cache = small
    first = cache.prepare(samples, LESION)
    changed = samples[1]
    with Image.open(changed.mask_path) as mask:
        Image.fromarray(255 - np.asarray(mask.convert("L"))).save(changed.mask_path)
    second = cache.prepare(samples, LESION)
    assert (second.images_built, second.regions_built) == (0, 1)
    assert second.items[str(changed.image_path)].region != first.items[str(changed.image_path)].region
    _assert_same_as_decoding(second, samples, LESION)


def test_regions_are_cached_per_roi_spec(sample_data, tmp_path):
    samples = read_dataset(sample_data).split("train")
    cache = GeometryCache(tmp_path / "cache", resize=72)
    lesion = cache.prepare(samples, LESION)
    background = cache.prepare(samples, RoiSpec("background"))
    assert background.images_built == 0  # the images are shared; only the regions are new
    for sample in samples:
        a, b = lesion.load(sample), background.load(sample)
        assert a[2] == b[2]
        if a[2]:
            assert torch.equal(b[1], 1 - a[1])
    dermo = cache.prepare(samples, RoiSpec("dermo", ("pigment_network", "streaks")))
    with_dermo = [s for s in samples if s.attribute_paths]
    assert with_dermo and sum(item.region is not None for item in dermo.items.values()) == len(with_dermo)
    _assert_same_as_decoding(dermo, with_dermo, RoiSpec("dermo", ("pigment_network", "streaks")))
    other = cache.prepare(with_dermo, RoiSpec("dermo", ("pigment_network",)))
    assert other.regions_built == len(with_dermo)


def test_a_torn_entry_is_rebuilt_and_a_foreign_one_is_an_error(small):
    _, samples, cache = small
    first = cache.prepare(samples, None)
    entry = first.items[str(samples[0].image_path)].image
    entry.write_bytes(entry.read_bytes()[:100])
    assert cache.prepare(samples, None).images_built == 1
    np.save(entry, np.zeros((3, 72, 72), dtype=np.float16)[..., :36])
    with pytest.raises(DataError, match="cache entry"):
        first.load(samples[0])


def test_data_cache_command(small, capsys):
    data, _, cache = small
    args = ["data", "cache", str(data), "--cache-dir", str(cache.root.parent), "--resize", "72", "--workers", "0"]
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["splits"]["train"] == {"images": 5, "images_built": 5, "regions_built": 5, "removed": 0,
                                         "regions": {"lesion": 5}}
    assert report["splits"]["val"]["images_built"] == 2
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "train: 5 images, 0 decoded now, 5 already cached" in out and "MiB" in out
