"""Ensembles of checkpoints: the mean of their members, and clear refusals of members that do not fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnmel.cli import main
from attnmel.errors import CheckpointError
from attnmel.evaluation.evaluate import evaluate_checkpoint
from attnmel.inference import DataSplit, InferenceSettings, Predictor, load_model

from .checkpoint_helpers import make_checkpoint
from .conftest import make_isic2017_subset


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_isic2017_subset(tmp_path_factory.mktemp("ensemble") / "data", n_train=3, n_val=8)


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    root = tmp_path_factory.mktemp("members")
    return {
        "a": make_checkpoint(root / "a.safetensors", seed=0),
        "b": make_checkpoint(root / "b.safetensors", seed=1),
        "imagenet": make_checkpoint(root / "imagenet.safetensors", seed=2, normalization="imagenet"),
        "3class": make_checkpoint(root / "3class.safetensors", seed=3, task="isic2017-3class"),
        "96px": make_checkpoint(root / "96px.safetensors", seed=4, image_size=96),
    }


def _probabilities(checkpoints, data, output):
    return evaluate_checkpoint(checkpoints, DataSplit(data, "val"), output,
                               settings=InferenceSettings(progress=False)).predictions.probabilities


def test_ensemble_is_the_mean_of_its_members(members, data, tmp_path):
    single = {name: _probabilities(members[name], data, tmp_path / name) for name in ("a", "b", "imagenet")}
    assert not np.allclose(single["a"], single["b"], atol=1e-3)
    ensemble = _probabilities([members["a"], members["b"]], data, tmp_path / "ab")
    np.testing.assert_allclose(ensemble, (single["a"] + single["b"]) / 2, atol=1e-6)
    # a member trained with other normalisation statistics gets its own view of the batch
    mixed = _probabilities([members["a"], members["imagenet"]], data, tmp_path / "mixed")
    np.testing.assert_allclose(mixed, (single["a"] + single["imagenet"]) / 2, atol=1e-5)


def test_ensemble_with_tta_averages_members_and_views_and_their_attention(members):
    loaded = [load_model(members[name]) for name in ("a", "b")]
    both = load_model([members["a"], members["b"]], tta=True)
    x = torch.randn(2, 3, 64, 64)
    singles = [Predictor(item.predictor.models, tta=True)(x) for item in loaded]
    probabilities, attention = both.predictor(x)
    torch.testing.assert_close(probabilities, (singles[0][0] + singles[1][0]) / 2, atol=1e-6, rtol=1e-5)
    for name in ("stage3", "stage4"):
        torch.testing.assert_close(attention[name], (singles[0][1][name] + singles[1][1][name]) / 2)
    assert [m["checkpoint"] for m in both.members()] == [str(members["a"]), str(members["b"])]


def test_members_of_another_task_or_geometry_are_refused(members, data, tmp_path, capsys):
    with pytest.raises(CheckpointError, match="same task and classes") as info:
        load_model([members["a"], members["3class"]])
    assert str(members["3class"]) in str(info.value) and "class_names" in str(info.value)
    with pytest.raises(CheckpointError, match="image_size is 96 but"):
        load_model([members["a"], members["96px"]])
    code = main(["evaluate", "--checkpoint", str(members["a"]), "--checkpoint", str(members["3class"]),
                 "--data", str(data), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
