"""Training through the fast path (cache + device pipeline) is the same training, and resumes exactly."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from attnmel.config import load_config
from attnmel.errors import ConfigError
from attnmel.training.loop import train

from .conftest import make_isic2017_subset, tiny

TINY = tiny("data.roi=lesion", "train.epochs=2")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_isic2017_subset(tmp_path_factory.mktemp("pipelines") / "ds", n_train=10, n_val=6)


def _train(data, output, extra=(), epochs=2, resume=False):
    config = load_config(None, [*TINY, f"train.epochs={epochs}", *extra])
    return train(config, data, output, resume=resume, progress=False, log=lambda *_: None)


def _weights(run):
    return load_file(str(run / "last-state.safetensors"))


@pytest.mark.slow
def test_device_pipeline_with_cache_trains_like_the_cpu_pipeline_and_resumes(tiny_data, tmp_path):
    fast = [f"data.cache_dir={tmp_path / 'cache'}", "data.cache=true", "data.pipeline=device"]
    reference = _train(tiny_data, tmp_path / "cpu")
    device = _train(tiny_data, tmp_path / "device", fast)
    assert (tmp_path / "cache" / "geometry-v1" / "index.json").is_file()
    a, b = _weights(tmp_path / "cpu"), _weights(tmp_path / "device")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6, msg=key)
    for row_a, row_b in zip(reference.history, device.history, strict=True):
        assert row_b["train_prior_samples"] == row_a["train_prior_samples"] > 0
        assert row_b["train_loss"] == pytest.approx(row_a["train_loss"], rel=1e-5)
        assert row_b["val_roc_auc"] == pytest.approx(row_a["val_roc_auc"], abs=1e-9)

    # interrupted after one epoch and resumed (the cache is reused): the same weights, exactly
    _train(tiny_data, tmp_path / "resumed", fast, epochs=1)
    resumed = _train(tiny_data, tmp_path / "resumed", fast, epochs=2, resume=True)
    c = _weights(tmp_path / "resumed")
    for key in b:
        assert torch.equal(c[key], b[key]), key
    assert [r["val_roc_auc"] for r in resumed.history] == [r["val_roc_auc"] for r in device.history]


@pytest.mark.slow
def test_bf16_autocast_and_channels_last_train(tiny_data, tmp_path):
    result = _train(tiny_data, tmp_path / "amp", ["data.pipeline=device", "train.amp=true", "train.channels_last=true",
                                                  "train.deterministic=false"], epochs=1)
    row = result.history[0]
    assert row["train_loss"] == row["train_loss"] and 0 <= row["val_roc_auc"] <= 1
    assert all(v.dtype == torch.float32 for v in _weights(tmp_path / "amp").values() if v.is_floating_point())


def test_unknown_pipeline_is_a_config_error(tiny_data, tmp_path):
    with pytest.raises(ConfigError, match="data.pipeline"):
        _train(tiny_data, tmp_path / "bad", ["data.pipeline=gpu"], epochs=1)


def test_resume_may_change_how_batches_are_made_but_not_what_is_trained(tmp_path):
    from attnmel.training.resume import resumable_config as _resumable_config

    saved = load_config(None, TINY).to_dict()
    faster = load_config(None, [*TINY, "data.pipeline=device", "data.cache=true", "data.num_workers=4", "train.epochs=9"])
    resumed = _resumable_config(faster, saved, tmp_path)
    assert (resumed.data.pipeline, resumed.data.cache, resumed.data.num_workers, resumed.train.epochs) == ("device", True, 4, 9)
    with pytest.raises(ConfigError, match="train.amp"):
        _resumable_config(load_config(None, [*TINY, "train.amp=true"]), saved, tmp_path)
