"""ONNX export: run through onnxruntime on real ISIC images and compared with PyTorch.

Tolerance: max |onnxruntime - PyTorch| below 1e-4 for logits and every attention map (float32;
observed around 1e-7 on a 2-core CPU for MobileNetV2 at 64 px). The export batch is 2; the check
runs batches of 1 and 5.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from attnmel.checkpoints.format import load_model_checkpoint
from attnmel.cli import main
from attnmel.data.images import read_image

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def exported(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    assert main(["export", "--checkpoint", str(tiny_checkpoint), "--format", "onnx", "--output", str(out)]) == 0
    return out


def real_batch(sample_data, meta, n):
    transform = meta.preprocessing.eval_transform()
    paths = sorted((sample_data / "ISIC-2017_Validation_Data").glob("*.jpg"))[:n]
    return torch.stack([transform(tv_tensors.Image(F.pil_to_tensor(read_image(p)))).as_subclass(torch.Tensor)
                        for p in paths])


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", [1, 5])
def test_onnx_matches_pytorch_on_real_images(exported, tiny_checkpoint, sample_data, batch_size):
    model, meta = load_model_checkpoint(tiny_checkpoint)
    batch = real_batch(sample_data, meta, batch_size)
    session = onnxruntime.InferenceSession(str(exported / "best.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    names = [o.name for o in session.get_outputs()]
    assert names == ["logits", "attention_stage3", "attention_stage4"]
    logits, attn3, attn4 = session.run(names, {"image": batch.numpy()})
    with torch.no_grad():
        reference = model(batch)
    diffs = {
        "logits": np.abs(logits - reference.logits.numpy()).max(),
        "attention_stage3": np.abs(attn3 - reference.attention["stage3"].numpy()).max(),
        "attention_stage4": np.abs(attn4 - reference.attention["stage4"].numpy()).max(),
    }
    print(f"batch {batch_size}: max abs diff {diffs}")
    assert logits.shape == (batch_size, 2) and attn3.shape == (batch_size, 1, 8, 8) and attn4.shape == (batch_size, 1, 4, 4)
    assert max(diffs.values()) < TOLERANCE, diffs


def test_onnx_metadata_and_dynamic_batch_axis(exported):
    proto = onnx.load(str(exported / "best.onnx"))
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["class_names"]) == ["other", "melanoma"]
    assert json.loads(props["preprocessing"])["image_size"] == 64
    assert json.loads(props["outputs"]) == ["logits", "attention_stage3", "attention_stage4"]
    assert json.loads(props["attnmel_metadata"])["architecture"]["backbone"] == "mobilenet_v2"
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value


def test_model_card_is_written_next_to_the_model(exported):
    card = (exported / "best.md").read_text()
    for heading in ("## Intended use", "## Training data", "## Metrics", "## Limitations"):
        assert heading in card
    assert "not for diagnosis" in card and "train: 8 images" in card and "roc auc" in card


def test_export_refuses_to_overwrite_its_source(tiny_checkpoint, capsys):
    code = main(["export", "--checkpoint", str(tiny_checkpoint), "--format", "safetensors",
                 "--output", str(tiny_checkpoint.parent)])
    assert code == 2 and "overwrite its source" in capsys.readouterr().err
