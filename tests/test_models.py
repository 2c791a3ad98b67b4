"""Every registered model (and every backbone of the generic heads) at two input sizes."""

from __future__ import annotations

import urllib.error

import pytest
import torch
import torchvision

import attnmel
from attnmel import create_model
from attnmel.errors import ConfigError, WeightsError
from attnmel.models import LogitsOnly, list_backbones, list_models, model_entry
from attnmel.models.backbones import BACKBONES, InputLowPass, is_head_key
from attnmel.models.registry import Architecture

# Every registered model on every backbone it takes: a model added with @register_model is tested here.
CASES = [
    (name, backbone)
    for name in list_models()
    for backbone in model_entry(name).backbones
    if not (name == "gap" and backbone == "vgg16_bn")  # identical to vgg16-gap
]
SIZES = (64, 97)


@pytest.fixture(scope="module")
def models():
    cache = {}

    def get(name, backbone):
        if (name, backbone) not in cache:
            torch.manual_seed(0)
            cache.clear()  # keep one model in memory at a time
            cache[(name, backbone)] = create_model(name, backbone=backbone)
        return cache[(name, backbone)]

    return get


def test_registry_lists_the_paper_rows():
    assert {"vgg16", "vgg16-gap", "melcnn", "attnmel"} <= set(attnmel.list_models())
    assert {"vgg16_bn", "resnet50", "efficientnet_b0", "mobilenet_v2", "convnext_tiny"} <= set(list_backbones())


@pytest.mark.parametrize(("name", "backbone"), CASES, ids=[f"{n}-{b}" for n, b in CASES])
@pytest.mark.parametrize("size", SIZES)
def test_forward_backward(models, name, backbone, size):
    model = models(name, backbone)
    model.train()
    x = torch.randn(2, 3, size, size)
    out = model(x)
    assert out.logits.shape == (2, 2)
    if name == "attnmel":
        spec = BACKBONES[backbone]
        assert list(out.attention) == list(spec.local_names)
        for amap, stride in zip(out.attention.values(), (8, 16), strict=True):
            assert amap.shape[:2] == (2, 1)
            assert abs(amap.shape[-1] - size / stride) <= 1
            assert float(amap.detach().min()) >= 0 and float(amap.detach().max()) <= 1
    else:
        assert out.attention == {}
    out.logits.sum().backward()
    for parameter_name, parameter in model.named_parameters():  # as timm's test_model_backward
        assert parameter.grad is not None, f"{parameter_name} gets no gradient"
    first_conv = next(p for n, p in model.named_parameters() if p.ndim == 4)
    assert float(first_conv.grad.abs().sum()) > 0, "no gradient reached the backbone"
    model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("backbone", list_backbones())
def test_declared_stage_channels_are_real(backbone):
    bb = attnmel.models.create_backbone(backbone)
    taps = bb(torch.randn(1, 3, 64, 64))
    assert [t.shape[1] for t in taps.values()] == list(BACKBONES[backbone].stage_channels)
    assert [64 // t.shape[-1] for t in taps.values()] == [8, 16, 32]


def test_softmax_attention_sums_to_one():
    model = create_model("attnmel", backbone="mobilenet_v2", normalize="softmax").eval()
    out = model(torch.randn(2, 3, 96, 96))
    for amap in out.attention.values():
        torch.testing.assert_close(amap.sum(dim=(2, 3)), torch.ones(2, 1))


def test_attnmel_classifier_reads_gap_and_both_gates():
    model = create_model("attnmel")
    assert model.classifier.in_features == 512 + 256 + 512
    assert model.gates["pool3"].local_proj.out_channels == 256


@pytest.mark.parametrize("name", list_models())
def test_logits_only_view_works_with_grad_cam_and_captum(models, name):
    from captum.attr import IntegratedGradients
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    entry = model_entry(name)
    model = models(name, "mobilenet_v2" if "mobilenet_v2" in entry.backbones else entry.default_backbone).eval()
    view = LogitsOnly(model)
    x = torch.randn(1, 3, 64, 64)
    with GradCAM(model=view, target_layers=[model.last_stage()]) as cam:
        heat = cam(input_tensor=x, targets=[ClassifierOutputTarget(1)])
    assert heat.shape == (1, 64, 64) and float(heat.min()) >= 0
    attributions = IntegratedGradients(view).attribute(x, target=1, n_steps=4)
    assert attributions.shape == x.shape and float(attributions.abs().sum()) > 0


def test_local_weights_file_loads_and_partial_file_is_rejected(tmp_path):
    reference = torchvision.models.mobilenet_v2()
    features = {k: v for k, v in reference.state_dict().items() if k.startswith("features.")}
    path = tmp_path / "features.pth"
    torch.save(features, path)
    model = create_model("attnmel", backbone="mobilenet_v2", weights=path)
    stage = model.backbone.stages["stage3"]
    torch.testing.assert_close(stage[0][0].weight, reference.features[0][0].weight)

    torch.save({k: v for i, (k, v) in enumerate(features.items()) if i % 2}, tmp_path / "half.pth")
    with pytest.raises(WeightsError, match="missing"):
        create_model("gap", backbone="mobilenet_v2", weights=tmp_path / "half.pth")
    with pytest.raises(WeightsError, match="not found"):
        create_model("gap", backbone="mobilenet_v2", weights=tmp_path / "nope.pth")


@pytest.mark.parametrize("backbone", list_backbones())
def test_every_backbone_loads_a_local_weights_file(backbone, tmp_path):
    """A state dict without the ImageNet classifier, as .pth or .safetensors, fills every stage tensor."""
    from safetensors.torch import save_file

    spec = BACKBONES[backbone]
    torch.manual_seed(1)
    reference = spec.build(weights=None)
    kept = {k: v for k, v in reference.state_dict().items() if not is_head_key(k)}
    path = tmp_path / ("weights.safetensors" if backbone in ("resnet50", "mobilenet_v2") else "weights.pth")
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in kept.items()}, str(path))
    else:
        torch.save(kept, path)
    torch.manual_seed(2)
    staged = attnmel.models.create_backbone(backbone, weights=path)
    loaded = list(staged.state_dict().values())
    assert len(loaded) == len(kept)  # the three stages hold the whole feature extractor, in order
    for ours, theirs in zip(loaded, kept.values(), strict=True):
        assert torch.equal(ours, theirs)


def test_shared_offline_imagenet_weights(mobilenet_weights):
    model = create_model("attnmel", backbone="mobilenet_v2", weights=mobilenet_weights)
    state = torch.load(mobilenet_weights, weights_only=True)
    torch.testing.assert_close(model.backbone.stages["stage3"][0][0].weight, state["features.0.0.weight"])


def test_imagenet_offline_is_one_clear_sentence(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsError) as info:
        create_model("attnmel", backbone="mobilenet_v2", weights="imagenet")
    message = str(info.value)
    assert "ImageNet" in message and "local state-dict file" in message
    assert message.count(". ") == 0 and message.endswith(".")


def test_unknown_names_are_config_errors():
    with pytest.raises(ConfigError, match="Unknown model"):
        create_model("resnet-attn")
    with pytest.raises(ConfigError, match="defined on vgg16_bn"):
        create_model("vgg16", backbone="resnet50")


@pytest.mark.parametrize("name", [n for n in list_models() if "normalize" not in model_entry(n).options])
def test_a_model_refuses_options_it_does_not_use(name):
    with pytest.raises(ConfigError, match=f"model {name!r} does not take attention_channels, normalize"):
        create_model(name, normalize="softmax", attention_channels=7)


def test_the_architecture_records_exactly_the_options_that_shaped_the_model():
    with torch.device("meta"):
        gap = create_model("gap", backbone="mobilenet_v2", weights=None)
        gated = create_model("attnmel", 3, backbone="mobilenet_v2", attention_channels=32)
    assert gap.architecture.to_dict() == {"name": "gap", "num_classes": 2, "backbone": "mobilenet_v2",
                                          "input_blur": 0.0}
    assert gated.architecture.to_dict() == {"name": "attnmel", "num_classes": 3, "backbone": "mobilenet_v2",
                                            "attention_channels": 32, "normalize": "sigmoid", "input_blur": 0.0}


def test_a_record_written_before_an_option_existed_reads_as_its_default():
    """Checkpoints saved before ``input_blur`` existed load, fine-tune and compare as input_blur=0."""
    old = Architecture.from_dict({"name": "attnmel", "num_classes": 2, "backbone": "mobilenet_v2",
                                  "normalize": "sigmoid", "attention_channels": 256})
    with torch.device("meta"):
        built = create_model("attnmel", backbone="mobilenet_v2")
    assert old == built.architecture and old.options["input_blur"] == 0.0


def test_input_blur_filters_pixel_noise_and_keeps_the_image():
    """The low-pass in front of the backbone cuts per-pixel noise to a third or less while a lesion-sized
    smooth blob passes almost unchanged; it adds no weights."""
    torch.manual_seed(0)
    low_pass = InputLowPass(1.0)
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    blob = torch.exp(-((yy - 32) ** 2 + (xx - 32) ** 2) / (2 * 12.0**2)).expand(1, 3, 64, 64)
    noise = torch.randn(1, 3, 64, 64)
    assert low_pass(noise).std() < noise.std() / 3
    assert (low_pass(blob) - blob).abs().max() < 0.01
    with torch.device("meta"):
        plain = create_model("attnmel", backbone="mobilenet_v2")
        blurred = create_model("attnmel", backbone="mobilenet_v2", input_blur=1.0)
    assert plain.state_dict().keys() == blurred.state_dict().keys()
    assert blurred.architecture.options["input_blur"] == 1.0


@pytest.mark.parametrize("value", [-0.5, 4.5, float("nan"), True, "1"])
def test_input_blur_out_of_range_is_one_config_error(value):
    with pytest.raises(ConfigError, match="model.input_blur must be a number of pixels from 0"):
        create_model("attnmel", backbone="mobilenet_v2", input_blur=value)


def test_a_new_model_is_one_decorated_function(monkeypatch):
    from attnmel.models import registry
    from attnmel.models.networks import MelCNN

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @registry.register_model("melcnn-wide", paper_row="-", description="test model", backbones=("mobilenet_v2",))
    def melcnn_wide(num_classes: int = 2, *, backbone: str = "mobilenet_v2", weights=None):
        return MelCNN(attnmel.models.create_backbone(backbone, weights), num_classes)

    assert "melcnn-wide" in list_models()
    model = create_model("melcnn-wide")
    assert model.architecture.to_dict() == {"name": "melcnn-wide", "num_classes": 2, "backbone": "mobilenet_v2"}
    assert model(torch.randn(1, 3, 64, 64)).logits.shape == (1, 2)
