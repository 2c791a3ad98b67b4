"""Checkpoints: metadata in the safetensors header and sidecar; pickles only with --trust-pickle.

Legacy pickles: attnmel state dicts saved with torch.save, and checkpoints of the original
IPMI2019-AttnMel code, whose key layout is rebuilt here and whose forward pass is written out
independently below, so the key mapping is checked by numbers, not by construction.
"""

from __future__ import annotations

import json
import pickle
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision
from safetensors import safe_open
from torch import nn

from attnmel import create_model, load_model
from attnmel.checkpoints.format import read_metadata, save_model_checkpoint
from attnmel.checkpoints.legacy import LegacyAssumptions, load_legacy_checkpoint
from attnmel.checkpoints.meta import Architecture, CheckpointMeta
from attnmel.cli import main
from attnmel.data.transforms import Preprocessing
from attnmel.errors import CheckpointError

from .checkpoint_helpers import network_of
from .conftest import SAMPLE


def test_metadata_is_embedded_and_mirrored_in_the_sidecar(tiny_checkpoint):
    with safe_open(str(tiny_checkpoint), framework="pt") as handle:
        embedded = json.loads(handle.metadata()["attnmel"])
    sidecar = json.loads(tiny_checkpoint.with_suffix(".json").read_text())
    assert json.dumps(embedded, sort_keys=True) == json.dumps(sidecar, sort_keys=True)  # NaN-safe comparison
    meta = read_metadata(tiny_checkpoint)
    assert embedded["architecture"] == {"name": "attnmel", "backbone": "mobilenet_v2", "num_classes": 2,
                                        "normalize": "sigmoid", "attention_channels": 256, "input_blur": 0.0}
    assert meta.architecture == Architecture("attnmel", 2, {"backbone": "mobilenet_v2", "normalize": "sigmoid",
                                                            "attention_channels": 256, "input_blur": 0.0})
    assert meta.class_names == ("other", "melanoma") and meta.attnmel_version
    assert set(embedded["preprocessing"]) == {"crop_ratio", "resize", "image_size", "mean", "std"}
    assert meta.training.data["train"]["images"] == 8 and meta.training.backbone_weights is None
    assert "roc_auc" in meta.metrics["val"]["melanoma"]
    assert meta.to_dict() == embedded


def test_the_old_loaders_still_load_for_one_release_and_say_so(tiny_checkpoint):
    """Code written against 0.x keeps working one release, warned, with the one loader's answer."""
    from attnmel.checkpoints import load_checkpoint
    from attnmel.inference import load_predictor

    network, meta = network_of(tiny_checkpoint)
    with pytest.warns(DeprecationWarning, match="attnmel.load_model"):
        old, old_meta, path = load_checkpoint(tiny_checkpoint)
    assert old_meta == meta and path == tiny_checkpoint
    _same_outputs(network, old)
    with pytest.warns(DeprecationWarning, match="attnmel.load_model"):
        predictor = load_predictor([tiny_checkpoint, tiny_checkpoint], "cpu", tta=True)
    assert predictor.predictor.tta and len(predictor.sources) == 2


def test_load_model_takes_settings_and_overrides_by_name(tiny_checkpoint):
    from attnmel.inference import InferenceSettings

    loaded = load_model([tiny_checkpoint], InferenceSettings(device="cpu", tta=True), use_temperature=False)
    assert loaded.predictor.tta and loaded.predictor.temperatures == [1.0] and loaded.device.type == "cpu"
    for wrong in ({"devices": "cpu"}, {"tta": True, "pretrained": "x"}):
        with pytest.raises(TypeError, match="fields of InferenceSettings"):
            load_model(tiny_checkpoint, **wrong)
    with pytest.raises(CheckpointError, match="no checkpoint given"):
        load_model([])


class _Boom:
    """Unpickling this writes a file: proof that a pickle was (or was not) executed."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pickle code ran"))


@pytest.mark.parametrize("name", ["model.pth", "model.ckpt", "model.weights"])
def test_pickles_are_refused_without_trust_and_never_unpickled(tmp_path, name, capsys):
    marker = tmp_path / "pwned"
    path = tmp_path / name
    torch.save({"state_dict": _Boom(marker)}, path)
    with pytest.raises(CheckpointError, match="--trust-pickle"):
        load_model(path, device="cpu")
    assert main(["predict", str(tmp_path), "--checkpoint", str(path), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "--trust-pickle" in err and "Traceback" not in err
    assert not marker.exists()


def _state_file(tmp_path: Path, payload) -> Path:
    path = tmp_path / "legacy.pth"
    torch.save(payload, path)
    return path


@torch.no_grad()
def _same_outputs(a: nn.Module, b: nn.Module, size: int = 64) -> None:
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    out_a, out_b = a.eval()(x), b.eval()(x)
    torch.testing.assert_close(out_a.logits, out_b.logits)
    assert out_a.attention.keys() == out_b.attention.keys()
    for name in out_a.attention:
        torch.testing.assert_close(out_a.attention[name], out_b.attention[name])


# mobilenet_v2 and efficientnet_b0 share their stage names: recognition must go by shapes
@pytest.mark.parametrize("name, backbone", [("attnmel", "mobilenet_v2"), ("gap", "efficientnet_b0")])
def test_trusted_bare_state_dict_is_recognised(tmp_path, name, backbone):
    model = create_model(name, backbone=backbone, weights=None)
    path = _state_file(tmp_path, model.state_dict())
    loaded, meta = network_of(path, trust_pickle=True)
    assert (meta.architecture.name, meta.architecture.backbone) == (name, backbone)
    assert meta.legacy["origin"].startswith("attnmel") and meta.legacy["assumed"]["image_size"] == 224
    _same_outputs(model, loaded)


def test_trusted_dict_with_metadata_keeps_it(tmp_path, tiny_checkpoint):
    model, meta = network_of(tiny_checkpoint)
    path = _state_file(tmp_path, {"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()},
                                         "metadata": meta.to_dict(), "epoch": 3})
    loaded, loaded_meta = network_of(path, trust_pickle=True)
    assert loaded_meta.preprocessing == meta.preprocessing and loaded_meta.training == meta.training
    _same_outputs(model, loaded)
    image = next((SAMPLE / "ISIC-2017_Validation_Data").glob("*.jpg"))
    assert main(["predict", str(image), "--checkpoint", str(path), "--trust-pickle", "--output", str(tmp_path / "p")]) == 0
    assert (tmp_path / "p" / "figures" / f"{image.stem}.png").is_file()


def test_weights_of_the_wrong_shape_are_an_error(tmp_path):
    state = create_model("attnmel", backbone="mobilenet_v2", weights=None).state_dict()
    state["classifier.weight"] = torch.zeros(2, 7)
    with pytest.raises(CheckpointError, match="match no attnmel architecture"):
        load_model(_state_file(tmp_path, state), device="cpu", trust_pickle=True)


# ------------------------------------------------------------------ the original IPMI2019-AttnMel code


def _randomize_batch_norm(module: nn.Module, generator: torch.Generator) -> None:
    for layer in module.modules():
        if isinstance(layer, nn.BatchNorm2d):
            layer.running_mean.copy_(torch.randn(layer.num_features, generator=generator) * 0.1)
            layer.running_var.copy_(torch.rand(layer.num_features, generator=generator) + 0.5)
            layer.weight.data.copy_(torch.rand(layer.num_features, generator=generator) + 0.5)
            layer.bias.data.copy_(torch.randn(layer.num_features, generator=generator) * 0.1)


def original_attnvgg(attention: bool = True, num_classes: int = 2) -> nn.Module:
    """A module with the original AttnVGG's attribute layout: vgg16_bn's features split into five
    conv blocks (re-indexed from 0, pools removed), two gates W_l/W_g/phi and ``classify``."""
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    vgg = torchvision.models.vgg16_bn(weights=None)
    layers = list(vgg.features.children())
    net = nn.Module()
    for index, (start, stop) in enumerate([(0, 6), (7, 13), (14, 23), (24, 33), (34, 43)], start=1):
        setattr(net, f"conv_block{index}", nn.Sequential(*layers[start:stop]))
    if attention:
        for name, local in (("attn1", 256), ("attn2", 512)):
            gate = nn.Module()
            gate.W_l = nn.Conv2d(local, 256, 1, bias=False)
            gate.W_g = nn.Conv2d(512, 256, 1, bias=False)
            gate.phi = nn.Conv2d(256, 1, 1, bias=True)
            setattr(net, name, gate)
        net.classify = nn.Linear(512 + 512 + 256, num_classes)
    else:
        net.dense = nn.Sequential(*list(vgg.classifier.children())[:-1])
        net.classify = nn.Linear(4096, num_classes)
    _randomize_batch_norm(net, generator)
    return net.eval()


@torch.no_grad()
def original_forward(net: nn.Module, x: torch.Tensor, softmax: bool = False):
    """The original code's forward pass at 224 px, written out: returns (logits, a1, a2)."""
    pools = []
    for index in range(1, 6):
        x = F.max_pool2d(getattr(net, f"conv_block{index}")(x), 2, 2)
        pools.append(x)
    pool3, pool4, pool5 = pools[2], pools[3], pools[4]
    if not hasattr(net, "attn1"):
        return net.classify(net.dense(pool5.flatten(1))), None, None
    g = F.avg_pool2d(pool5, 7, stride=1).flatten(1)
    outputs, maps = [g], []
    for gate, local, up in ((net.attn1, pool3, 4), (net.attn2, pool4, 2)):
        global_proj = F.interpolate(gate.W_g(pool5), scale_factor=up, mode="bilinear", align_corners=False)
        c = gate.phi(F.relu(gate.W_l(local) + global_proj))
        n, _, h, w = c.shape
        if softmax:
            a = torch.softmax(c.view(n, 1, -1), dim=2).view(n, 1, h, w)
            outputs.append((a * local).view(n, local.shape[1], -1).sum(dim=2))
        else:
            a = torch.sigmoid(c)
            outputs.append(F.adaptive_avg_pool2d(a * local, 1).flatten(1))
        maps.append(a)
    return net.classify(torch.cat(outputs, dim=1)), maps[0], maps[1]


@pytest.mark.slow
def test_original_attnmel_checkpoint_maps_onto_attnmel(tmp_path):
    net = original_attnvgg()
    path = tmp_path / "checkpoint.pth"
    torch.save({"state_dict": net.state_dict(), "opt_state_dict": {"state": {}, "param_groups": []}}, path)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    for softmax in (False, True):  # the original's --normalize_attn
        model, meta = load_legacy_checkpoint(path, assumed=LegacyAssumptions(normalize="softmax" if softmax else "sigmoid"))
        assert meta.architecture.name == "attnmel" and meta.architecture.backbone == "vgg16_bn"
        assert meta.legacy["origin"].startswith("IPMI2019-AttnMel")
        assert meta.preprocessing.image_size == 224 and meta.preprocessing.mean[0] == pytest.approx(0.6820)
        logits, a1, a2 = original_forward(net, x, softmax)
        with torch.no_grad():
            ours = model(x)
        torch.testing.assert_close(ours.logits, logits, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(ours.attention["pool3"], a1, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(ours.attention["pool4"], a2, atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_original_vgg_checkpoint_maps_onto_vgg16(tmp_path):
    net = original_attnvgg(attention=False)
    path = tmp_path / "checkpoint.pth"
    torch.save({"state_dict": OrderedDict(net.state_dict())}, path)
    model, meta = network_of(path, trust_pickle=True)
    assert meta.architecture.name == "vgg16"
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    logits, _, _ = original_forward(net, x)
    with torch.no_grad():
        torch.testing.assert_close(model(x).logits, logits, atol=1e-4, rtol=1e-4)


def test_convert_a_legacy_pickle_to_safetensors(tmp_path, capsys):
    model = create_model("attnmel", backbone="mobilenet_v2", weights=None)
    legacy = _state_file(tmp_path, {"model": model.state_dict()})
    out = tmp_path / "converted"
    assert main(["export", "--checkpoint", str(legacy), "--format", "safetensors", "--output", str(out)]) == 2
    assert "--trust-pickle" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(legacy), "--format", "safetensors", "--output", str(out),
                 "--trust-pickle", "--legacy-attention", "softmax", "--legacy-normalization", "isic2016"]) == 0
    converted, meta = network_of(out / "legacy.safetensors")  # no flag needed any more
    assert meta.architecture.options["normalize"] == "softmax" and meta.preprocessing.mean[0] == pytest.approx(0.7012)
    assert meta.legacy["file"] == str(legacy)
    card = (out / "legacy.md").read_text()
    assert "legacy pickle" in card and "not a diagnostic tool" in card
    reference = create_model("attnmel", backbone="mobilenet_v2", weights=None, normalize="softmax")
    reference.load_state_dict(model.state_dict())
    _same_outputs(reference, converted)


def test_save_then_load_roundtrip_without_pickle(tmp_path, monkeypatch):
    model = create_model("attnmel", backbone="mobilenet_v2", weights=None)
    meta = CheckpointMeta(Architecture.of(model), "melanoma", ("other", "melanoma"), ("melanoma",),
                          Preprocessing(0.8, 72, 64, (0.5,) * 3, (0.2,) * 3))
    path = save_model_checkpoint(tmp_path / "m.safetensors", model, meta)

    def no_unpickling(*args, **kwargs):
        raise AssertionError("a safetensors checkpoint must not be unpickled")

    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    monkeypatch.setattr(torch, "load", no_unpickling)
    loaded, _ = network_of(path)
    _same_outputs(model, loaded)
