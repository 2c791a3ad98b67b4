"""benchmarks/stability.py (issue 20): |dP| under +-1 grey-level noise and JPEG q90, for any checkpoint."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from .conftest import benchmark_script


@pytest.fixture(scope="module")
def stability():
    yield from benchmark_script("stability")


def test_perturbations_change_every_pixel_by_one_level_or_re_encode(stability):
    image = np.random.default_rng(0).integers(1, 255, (40, 50, 3), dtype=np.uint8)
    noisy = stability.plus_minus_one(image, np.random.default_rng(1))
    assert np.array_equal(np.abs(noisy.astype(int) - image), np.ones_like(image, dtype=int))
    assert np.array_equal(stability.shifted(image, 1).astype(int) - image, np.ones_like(image, dtype=int))
    again = stability.jpeg_again(image)
    assert again.shape == image.shape and not np.array_equal(again, image)


def test_the_table_for_any_checkpoint(stability, tiny_checkpoint, capsys):
    data = tiny_checkpoint.parents[1] / "data"
    assert stability.main(["--checkpoint", str(tiny_checkpoint), "--data", str(data), "--limit", "4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "class flips at default 0.5 (no operating point stored in the checkpoint)" in lines[0]
    assert "| model | perturbation | images | max abs dP | p95 abs dP | class flips | abs d log-odds / sd |" in lines
    rows = [line.split("|")[1:-1] for line in lines if line.startswith("| ") and "images |" not in line]
    assert [r[1].strip() for r in rows] == ["+-1 grey level (x1)", "+1 / -1 everywhere", "JPEG q90"]
    for name, _, images, largest, p95, _, relative in rows:
        assert name.strip() == str(tiny_checkpoint)
        assert int(images) == 4 and 0 <= float(p95) <= float(largest) <= 1 and float(relative) >= 0


def test_every_fold_model_of_a_yardstick_is_measured(stability, tiny_checkpoint, tmp_path, capsys):
    """Each finished fold (its scores cached) is one model of the table; an unfinished fold is not."""
    import shutil

    from attnmel.yardstick import SCORES_FILE

    runs = tmp_path / "yardstick"
    for fold in ("fold0", "fold1", "fold2"):
        shutil.copytree(tiny_checkpoint.parent, runs / "seed0" / fold)
    for fold in ("fold0", "fold1"):
        (runs / "seed0" / fold / SCORES_FILE).write_text("{}")
    data = tiny_checkpoint.parents[1] / "data"
    assert stability.main(["--yardstick", str(runs), "--data", str(data), "--limit", "2"]) == 0
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines()
            if line.startswith("| ") and "images |" not in line]
    assert [r[0].strip() for r in rows] == [str(runs / "seed0" / f) for f in ("fold0", "fold1") for _ in range(3)]
    with pytest.raises(SystemExit, match="no finished fold model"):
        stability.main(["--yardstick", str(tmp_path / "empty"), "--data", str(data)])


class _LogOddsModel:
    """Answers sigmoid(z / temperature), z from the image's mean and its top-left pixel (which noise moves)."""

    def __init__(self, temperature: float):
        self.temperature = temperature

    def predict(self, images, batch_size=32, tta=None):
        z = [(float(i.mean()) - 128) / 40 + float(i[0, 0, 0]) / 200 for i in images]
        return [SimpleNamespace(probability=1 / (1 + np.exp(-v / self.temperature))) for v in z]


def test_the_relative_change_ignores_the_temperature(stability, tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for k in range(6):
        paths.append(tmp_path / f"{k}.png")
        Image.fromarray(rng.integers(40 * k, 40 * k + 40, (24, 24, 3), dtype=np.uint8)).save(paths[-1])
    plain, sharp = (stability.measure(_LogOddsModel(t), paths) for t in (1.0, 0.5))
    for a, b in zip(plain, sharp, strict=True):
        assert b.relative_change == pytest.approx(a.relative_change, rel=1e-3)
    assert plain[0].relative_change > 0 and sharp[0].max_abs_dp != pytest.approx(plain[0].max_abs_dp, rel=1e-3)


def test_tta_reaches_every_answer(stability, tmp_path):
    class Recording(_LogOddsModel):
        def predict(self, images, batch_size=32, tta=None):
            self.asked.append(tta)
            return super().predict(images, batch_size)

    path = tmp_path / "a.png"
    Image.fromarray(np.full((24, 24, 3), 100, dtype=np.uint8)).save(path)
    for tta, expected in ((True, {True}), (False, {None})):
        model = Recording(1.0)
        model.asked = []
        stability.measure(model, [path], tta=tta)
        assert set(model.asked) == expected and len(model.asked) == 5  # base, one draw, +1, -1, JPEG


@pytest.fixture(scope="module")
def noise_gain():
    yield from benchmark_script("noise_gain", folder="benchmarks")


def test_reestimated_statistics_are_the_images_own(noise_gain):
    torch.manual_seed(0)
    layers = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    images = torch.randn(12, 3, 8, 8) * 3 + 1
    noise_gain.reestimate_statistics(layers, images, batch_size=4)
    expected = layers[0](images).mean((0, 2, 3))
    assert torch.allclose(layers[1].running_mean, expected, atol=1e-5) and not layers.training


def test_noise_gain_table_for_any_checkpoint(noise_gain, tiny_checkpoint, tmp_path, capsys):
    """Three rows (ImageNet statistics, re-estimated ones, the checkpoint), one finite share per tap."""
    weights = tmp_path / "mnv2.pth"
    torch.save(torchvision.models.mobilenet_v2().features.state_dict(prefix="features."), weights)
    data = tiny_checkpoint.parents[1] / "data"
    assert noise_gain.main(["--weights", str(weights), "--checkpoint", str(tiny_checkpoint), "--data", str(data),
                            "--images", "4", "--estimate", "4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line.split("|")[1:-1] for line in lines if line.startswith("| ") and "backbone |" not in line]
    assert [r[0].strip() for r in rows] == ["ImageNet mobilenet_v2, its own statistics",
                                            "the same, statistics of 4 training images", str(tiny_checkpoint)]
    assert all(len(r) == 4 and all(0 <= float(v) < 100 for v in r[1:]) for r in rows)
