"""Joint image + mask transforms keep the two aligned and follow the paper's geometry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision import tv_tensors

from attnmel.data.transforms import (
    NORMALIZATION_PRESETS,
    RandomRot90,
    RatioCenterCrop,
    eval_augment,
    geometry,
    resolve_normalization,
    train_augment,
)
from attnmel.errors import ConfigError


def _pair(height=150, width=200):
    """An image whose red channel is 255 exactly where the mask is 1 (an off-centre blob)."""
    mask = torch.zeros(1, height, width, dtype=torch.uint8)
    mask[:, 30:70, 60:140] = 1
    image = torch.zeros(3, height, width, dtype=torch.uint8)
    image[0] = mask[0] * 255
    image[1] = torch.arange(width, dtype=torch.uint8).expand(height, width)
    return tv_tensors.Image(image), tv_tensors.Mask(mask)


def test_ratio_center_crop_is_a_centred_square_of_the_short_side():
    image, mask = _pair(150, 200)
    out = RatioCenterCrop(0.8)({"image": image, "mask": mask})
    assert out["image"].shape[-2:] == (120, 120) and out["mask"].shape[-2:] == (120, 120)
    assert torch.equal(out["image"], image[:, 15:135, 40:160])


def test_geometry_resizes_to_square():
    image, mask = _pair(192, 256)
    out = geometry(256, 0.8)({"image": image, "mask": mask})
    assert out["image"].shape == (3, 256, 256) and out["image"].dtype == torch.uint8
    assert set(out["mask"].unique().tolist()) <= {0, 1}


@pytest.mark.parametrize("seed", range(6))
def test_training_augmentation_moves_mask_with_image(seed):
    image, mask = _pair(150, 200)
    mean, std = NORMALIZATION_PRESETS["isic2017"]
    torch.manual_seed(seed)
    pipeline = lambda sample: train_augment(96, mean, std)(geometry(128, 0.8)(sample))  # noqa: E731
    out = pipeline({"image": image, "mask": mask})
    assert out["image"].shape == (3, 96, 96) and out["image"].dtype == torch.float32
    red = out["image"][0] * std[0] + mean[0]
    bright = red > 0.5
    agree = (bright == out["mask"][0].bool()).float().mean()
    assert agree > 0.97, f"mask and image disagree on {1 - agree:.1%} of pixels"


def test_rot90_is_exact_and_covers_all_quarters():
    image, mask = _pair(64, 64)
    seen = set()
    for seed in range(40):
        torch.manual_seed(seed)
        out = RandomRot90()({"image": image, "mask": mask})
        k = next(k for k in range(4) if torch.equal(out["image"], torch.rot90(image, k, dims=(-2, -1))))
        assert torch.equal(out["mask"], torch.rot90(mask, k, dims=(-2, -1)))
        seen.add(k)
    assert seen == {0, 1, 2, 3}


def test_eval_augment_is_deterministic_centre_crop():
    image, mask = _pair(256, 256)
    mean, std = NORMALIZATION_PRESETS["imagenet"]
    a = eval_augment(224, mean, std)({"image": image, "mask": mask})
    b = eval_augment(224, mean, std)({"image": image, "mask": mask})
    assert torch.equal(a["image"], b["image"]) and a["image"].shape == (3, 224, 224)


def test_normalization_sources(tmp_path):
    assert resolve_normalization("isic2016") == NORMALIZATION_PRESETS["isic2016"]
    assert resolve_normalization({"mean": [0.5] * 3, "std": [0.2] * 3}) == ((0.5,) * 3, (0.2,) * 3)
    path = tmp_path / "stats.json"
    path.write_text('{"mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6]}')
    assert resolve_normalization(str(path)) == ((0.1, 0.2, 0.3), (0.4, 0.5, 0.6))
    with pytest.raises(ConfigError, match="neither a preset"):
        resolve_normalization("isic2099")
    with pytest.raises(ConfigError, match="non-positive"):
        resolve_normalization({"mean": [0.5] * 3, "std": [0.0] * 3})


#: the normalisation of the robustness tests: one grey level is 1 / (255 x STD) in the model's units
STD = 0.25


def _image_and_mask(rng: np.random.Generator, low: int = 0, high: int = 256) -> dict:
    image = tv_tensors.Image(torch.from_numpy(rng.integers(low, high, (3, 64, 64), dtype=np.uint8)))
    mask = tv_tensors.Mask(torch.from_numpy((rng.random((1, 64, 64)) > 0.5).astype(np.uint8)))
    return {"image": image, "mask": mask}


def _plain_and_augmented(sample: dict, robustness, seed: int) -> list[dict]:
    """The training augmentation without and with ``robustness``, from the same random state."""
    outputs = []
    for variant in (None, robustness):
        torch.manual_seed(seed)
        outputs.append(train_augment(48, (0.5, 0.5, 0.5), (STD, STD, STD), variant)(sample))
    return outputs


def test_jpeg_robustness_reencodes_the_image_and_leaves_the_mask():
    from attnmel.data.transforms import Robustness

    plain, reencoded = _plain_and_augmented(_image_and_mask(np.random.default_rng(0)), Robustness((10, 10), 1.0), 3)
    assert torch.equal(plain["mask"], reencoded["mask"])  # the same crop and flips, the mask untouched
    assert (plain["image"] - reencoded["image"]).abs().mean() > 0.1  # quality 10 visibly changes noise


def test_noise_robustness_changes_a_share_of_the_images_by_grey_levels_and_leaves_the_mask():
    from attnmel.data.transforms import Robustness

    rng = np.random.default_rng(1)
    sample = _image_and_mask(rng, 20, 236)
    changed = 0
    for _ in range(40):
        plain, noisy = _plain_and_augmented(sample, Robustness(noise_levels=2.0, noise_probability=0.5),
                                            int(rng.integers(1 << 30)))
        assert torch.equal(plain["mask"], noisy["mask"])
        grey_levels = ((noisy["image"] - plain["image"]) * STD * 255).std().item()
        if grey_levels > 0:  # noise of sd 2 grey levels, not 2 units of the normalised scale
            assert 1.5 < grey_levels < 2.5
            changed += 1
    assert 8 <= changed <= 32  # about half the images, never all or none
