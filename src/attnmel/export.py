"""Exporting a checkpoint for use outside attnmel, with a model card beside every exported model.

- ``onnx``: one graph with input ``image`` (N, 3, S, S; normalised as the card says), outputs
  ``logits`` and one ``attention_<layer>`` map (N, 1, h, w) per attention gate, a dynamic batch
  axis, and the checkpoint metadata (class names, preprocessing, ...) in ``metadata_props``.
  Written with ``torch.onnx.export(dynamo=True)`` (the torch.export-based exporter, torch's
  default since 2.9); when onnxruntime is installed the export is run once and compared with
  PyTorch.
- ``safetensors``: a clean attnmel checkpoint, the way off a legacy pickle (``--trust-pickle``).
"""

from __future__ import annotations

import json
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from attnmel.checkpoints.card import model_card, render_markdown
from attnmel.checkpoints.format import save_model_checkpoint
from attnmel.checkpoints.legacy import LegacyAssumptions
from attnmel.checkpoints.loader import load_checkpoint
from attnmel.checkpoints.meta import CheckpointMeta, attnmel_version
from attnmel.errors import AttnmelError, CheckpointError
from attnmel.io import atomic_path, atomic_write_text, json_safe

FORMATS = ("onnx", "safetensors")
ONNX_OPSET = 18
ONNX_INPUT = "image"


@dataclass
class ExportResult:
    format: str
    model: Path
    card: Path
    outputs: list[str] = field(default_factory=list)
    #: max |onnxruntime - PyTorch| per output on a check batch (None when onnxruntime is absent)
    max_abs_diff: dict[str, float] | None = None


class ExportView(nn.Module):
    """The model with tuple outputs in a fixed order (logits, then each map), as ONNX needs."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.layers = list(model.attention_layers)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        output = self.model(image)
        return (output.logits, *(output.attention[name] for name in self.layers))


def onnx_output_names(model: nn.Module) -> list[str]:
    return ["logits", *(f"attention_{name}" for name in model.attention_layers)]


def _onnx_modules():
    try:
        import onnx
    except ImportError:
        raise AttnmelError("ONNX export needs the export extras: pip install 'attnmel[export]'.") from None
    try:
        import onnxruntime
    except ImportError:
        onnxruntime = None
    return onnx, onnxruntime


def export_onnx(model: nn.Module, meta: CheckpointMeta, target: str | Path, *, opset: int = ONNX_OPSET) -> ExportResult:
    """Write ``model`` as ONNX to ``target`` (the model card is the caller's job, see ``export_model``)."""
    onnx, onnxruntime = _onnx_modules()
    target = Path(target)
    view = ExportView(model.cpu()).eval()
    size = meta.preprocessing.image_size
    names = onnx_output_names(model)
    # batch 2 as the example so that torch.export does not specialise the batch axis to 1
    example = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    batch = torch.export.Dim("batch", min=1, max=65536)
    with tempfile.TemporaryDirectory(prefix="attnmel-onnx-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter chatter (deprecations inside torch.export/onnxscript)
        raw = Path(tmp) / "model.onnx"
        try:
            torch.onnx.export(
                view, (example,), str(raw), input_names=[ONNX_INPUT], output_names=names,
                dynamic_shapes=({0: batch},), opset_version=opset, dynamo=True, external_data=False,
                verbose=False, report=False,
            )
        except Exception as exc:  # noqa: BLE001 - exporter failures are many and deep; one sentence for the user
            raise AttnmelError(f"ONNX export of {meta.architecture.name} failed ({type(exc).__name__}: {exc}).") from None
        proto = onnx.load(str(raw))
    proto.doc_string = (
        f"attnmel {meta.architecture.name} ({meta.architecture.backbone}): input '{ONNX_INPUT}' "
        f"(N, 3, {size}, {size}) normalised with metadata 'preprocessing'; outputs {', '.join(names)}."
    )
    props = {
        "attnmel_metadata": json.dumps(json_safe(meta.to_dict())),
        "class_names": json.dumps(list(meta.class_names)),
        "preprocessing": json.dumps(meta.preprocessing.to_dict()),
        "architecture": json.dumps(meta.architecture.to_dict()),
        "task": meta.task,
        "attnmel_version": meta.attnmel_version,
        "outputs": json.dumps(names),
    }
    del proto.metadata_props[:]
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    with atomic_path(target) as tmp_target:
        onnx.save(proto, str(tmp_target))
    result = ExportResult("onnx", target, target.with_suffix(".md"), names)
    if onnxruntime is not None:
        result.max_abs_diff = compare_with_onnxruntime(view, target, example[:1].repeat(3, 1, 1, 1))
    return result


@torch.no_grad()
def compare_with_onnxruntime(view: ExportView, path: Path, batch: torch.Tensor) -> dict[str, float]:
    """Max |onnxruntime - PyTorch| per output for ``batch`` (a batch size other than the export's)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    ours = view(batch)
    theirs = session.run(names, {ONNX_INPUT: batch.numpy()})
    return {name: float(np.abs(t - o.numpy()).max()) for name, t, o in zip(names, theirs, ours, strict=True)}


def export_model(
    checkpoint: str | Path | None,
    output_dir: str | Path | None = None,
    fmt: str = "onnx",
    *,
    trust_pickle: bool = False,
    legacy: LegacyAssumptions | None = None,
    opset: int = ONNX_OPSET,
) -> ExportResult:
    """Export ``checkpoint`` (None: the shipped model) to ``output_dir`` (default: ``export/`` beside
    it) as ``<stem>.<fmt>`` + ``<stem>.md``."""
    if fmt not in FORMATS:
        raise AttnmelError(f"unknown export format {fmt!r}; choose one of {list(FORMATS)}.")
    model, meta, source = load_checkpoint(checkpoint, "cpu", trust_pickle=trust_pickle, legacy=legacy)
    if source.is_dir():
        source = source / "best.safetensors"
    output_dir = Path(output_dir) if output_dir else source.parent / "export"
    target = output_dir / f"{source.stem}.{fmt}"
    if target.resolve() == source.resolve():
        raise CheckpointError(f"{target}: the export would overwrite its source; choose another --output.")
    if fmt == "onnx":
        result = export_onnx(model, meta, target, opset=opset)
    else:
        save_model_checkpoint(target, model, meta.replace(attnmel_version=attnmel_version()))
        result = ExportResult("safetensors", target, target.with_suffix(".md"), ["logits", *model.attention_layers])
    atomic_write_text(result.card, render_markdown(model_card(meta)))
    return result
