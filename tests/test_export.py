"""ONNX export: run through onnxruntime on real ISIC images and compared with PyTorch.

Tolerance: max |onnxruntime - PyTorch| below 1e-4 for probabilities, logits and every attention
map (float32). The export batch is 2; the check runs batches of 1 and 5. An ONNX Runtime user who
makes the view with ``attnmel.export.onnx_view`` (or its copy in the model card, run verbatim
here) gets attnmel's probabilities within 1e-3; the ONNX metadata holds numbers, never code.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from attnmel.cli import main
from attnmel.export import onnx_view, onnx_view_source
from attnmel.inference import load_model

from .checkpoint_helpers import make_checkpoint

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def exported(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    assert main(["export", "--checkpoint", str(tiny_checkpoint), "--format", "onnx", "--output", str(out)]) == 0
    return out


def card_copy(exported) -> dict:
    """The lines the model card shows, run as a user who copies them would (not from the ONNX file)."""
    card = (exported / "best.md").read_text()
    code = card.split("```python\n", 1)[1].split("\n\n\nimport json", 1)[0]
    assert code == onnx_view_source().rstrip("\n")
    assert "as_model_rgb" not in code  # runs without attnmel
    namespace: dict = {}
    exec(code, namespace)
    return namespace


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", [1, 5])
def test_onnx_matches_pytorch_on_real_images(exported, tiny_checkpoint, sample_data, batch_size):
    loaded = load_model(tiny_checkpoint)
    paths = sorted((sample_data / "ISIC-2017_Validation_Data").glob("*.jpg"))[:batch_size]
    pre = json.loads({p.key: p.value for p in onnx.load(str(exported / "best.onnx")).metadata_props}["preprocessing"])
    views = np.stack([onnx_view(p, pre["crop_ratio"], pre["resize"], pre["image_size"]) for p in paths])
    copied = np.stack([card_copy(exported)["onnx_view"](p, pre["crop_ratio"], pre["resize"], pre["image_size"])
                       for p in paths])
    assert np.array_equal(views, copied)  # 8-bit RGB JPEGs: the copy without attnmel gives the same view
    session = onnxruntime.InferenceSession(str(exported / "best.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    names = [o.name for o in session.get_outputs()]
    assert names == ["probabilities", "logits", "attention_stage3", "attention_stage4"]
    probabilities, logits, attn3, attn4 = session.run(names, {"image": views})
    batch = (torch.from_numpy(views).permute(0, 3, 1, 2).float() / 255 - torch.tensor(loaded.preprocessing.mean).view(
        1, 3, 1, 1)) / torch.tensor(loaded.preprocessing.std).view(1, 3, 1, 1)
    with torch.no_grad():
        reference = loaded.predictor.models[0](batch)
    diffs = {
        "probabilities": np.abs(probabilities - torch.softmax(reference.logits, -1).numpy()).max(),
        "logits": np.abs(logits - reference.logits.numpy()).max(),
        "attention_stage3": np.abs(attn3 - reference.attention["stage3"].numpy()).max(),
        "attention_stage4": np.abs(attn4 - reference.attention["stage4"].numpy()).max(),
    }
    print(f"batch {batch_size}: max abs diff {diffs}")
    assert logits.shape == (batch_size, 2) and attn3.shape == (batch_size, 1, 8, 8) and attn4.shape == (batch_size, 1, 4, 4)
    assert max(diffs.values()) < TOLERANCE, diffs
    ours = np.array([r.probabilities["melanoma"] for r in loaded.predict([str(p) for p in paths])])
    assert np.abs(probabilities[:, 1] - ours).max() < 1e-3  # the recipe gives attnmel's own answers


def test_onnx_metadata_and_dynamic_batch_axis(exported):
    proto = onnx.load(str(exported / "best.onnx"))
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["class_names"]) == ["other", "melanoma"]
    assert json.loads(props["preprocessing"])["image_size"] == 64
    assert json.loads(props["outputs"]) == ["probabilities", "logits", "attention_stage3", "attention_stage4"]
    assert props["input_format"].startswith("uint8 RGB")
    # data only: numbers, sizes and names; no code for anyone to exec() (issue 20)
    assert "preprocessing_recipe" not in props and not any("def " in value or "import " in value for value in props.values())
    assert json.loads(props["attnmel_metadata"])["architecture"]["backbone"] == "mobilenet_v2"
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value


def test_model_card_is_written_next_to_the_model(exported):
    card = (exported / "best.md").read_text()
    for heading in ("## Intended use", "## Training data", "## Metrics", "## Limitations"):
        assert heading in card
    assert "not for diagnosis" in card and "train: 8 images" in card and "roc auc" in card
    assert "## Using the ONNX file" in card and "def onnx_view" in card and "exec(" not in card


def test_export_refuses_to_overwrite_its_source(tiny_checkpoint, capsys):
    code = main(["export", "--checkpoint", str(tiny_checkpoint), "--format", "safetensors",
                 "--output", str(tiny_checkpoint.parent)])
    assert code == 2 and "overwrite its source" in capsys.readouterr().err


def test_a_model_with_an_input_low_pass_exports_and_reloads_with_it(tmp_path):
    """``model.input_blur`` is part of the network: the checkpoint rebuilds it and ONNX carries it."""
    from attnmel.export import export_model

    checkpoint = make_checkpoint(tmp_path / "blurred.safetensors", input_blur=1.0)
    loaded = load_model(checkpoint)
    assert loaded.predictor.models[0].backbone.low_pass.sigma == 1.0
    result = export_model(checkpoint, tmp_path / "out", "onnx", log=None)
    assert max(result.max_abs_diff.values()) < TOLERANCE, result.max_abs_diff
    assert "blurs it with a fixed Gaussian of sigma 1 px" in result.card.read_text()
