"""Exporting a checkpoint for use outside attnmel, with a model card beside every exported model.

- ``onnx``: one graph whose input ``image`` is the view the model sees as uint8 RGB pixels
  (N, S, S, 3): the normalisation and the calibrated softmax are inside the graph, and the geometry
  that makes the view (centre crop, resize, centre crop) is the function ``onnx_view``, imported
  from attnmel or copied from the model card. The ONNX metadata holds only data (numbers, sizes,
  names), never code: no one is asked to ``exec()`` a string from a file that may be tampered
  with. Outputs: ``probabilities``
  (softmax of the logits at the checkpoint's temperature), ``logits`` and one ``attention_<layer>``
  map (N, 1, h, w) per attention layer; a dynamic batch axis; the checkpoint metadata in
  ``metadata_props``. Written with ``torch.onnx.export(dynamo=True)``; when onnxruntime is
  installed the export is run once and compared with PyTorch.
- ``safetensors``: a clean attnmel checkpoint, the way off a legacy pickle (``--trust-pickle``).
"""

from __future__ import annotations

import inspect
import json
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import torch
from PIL import Image
from torch import nn

from attnmel.checkpoints.card import model_card, render_markdown
from attnmel.checkpoints.format import save_model_checkpoint
from attnmel.checkpoints.legacy import LegacyAssumptions
from attnmel.checkpoints.meta import CheckpointMeta, attnmel_version
from attnmel.data.images import as_model_rgb
from attnmel.errors import AttnmelError, CheckpointError
from attnmel.inference import load_model
from attnmel.io import atomic_path, atomic_write_text, json_safe
from attnmel.models import with_maps
from attnmel.outputs import OutputSet, check_output_dir, training_run_file

FORMATS = ("onnx", "safetensors")
ONNX_OPSET = 18
ONNX_INPUT = "image"

def onnx_view(image, crop_ratio: float, resize: int, image_size: int) -> np.ndarray:
    """The uint8 RGB view (image_size x image_size x 3) the exported graph takes, from an image file
    or a PIL image: attnmel's own decode, then its evaluation geometry in Pillow (centre square of
    crop_ratio x the short side, resized, centre crop); the numbers come from the ONNX file's
    ``preprocessing`` metadata. The model card prints these lines to copy, with Pillow's decode."""
    image = image if isinstance(image, Image.Image) else Image.open(image)
    image = as_model_rgb(image)  # without attnmel: ImageOps.exif_transpose(image).convert("RGB")
    width, height = image.size
    side = int(crop_ratio * min(width, height))
    left, top = int(round((width - side) / 2.0)), int(round((height - side) / 2.0))
    image = image.crop((left, top, left + side, top + side)).resize((resize, resize), Image.Resampling.BILINEAR)
    offset = int(round((resize - image_size) / 2.0))
    image = image.crop((offset, offset, offset + image_size, offset + image_size))
    return np.asarray(image, dtype=np.uint8)


def onnx_view_source() -> str:
    """``onnx_view`` as the model card shows it to copy: its own lines (so they cannot drift), with
    Pillow's decode in place of attnmel's (the same for 8-bit RGB and gray files)."""
    source = inspect.getsource(onnx_view).replace(
        'as_model_rgb(image)  # without attnmel: ImageOps.exif_transpose(image).convert("RGB")',
        'ImageOps.exif_transpose(image).convert("RGB")  # attnmel.export.onnx_view also converts 16-bit, alpha, ...')
    return "import numpy as np\nfrom PIL import Image, ImageOps\n\n\n" + source


@dataclass
class ExportResult:
    format: str
    model: Path
    card: Path
    outputs: list[str] = field(default_factory=list)
    #: max |onnxruntime - PyTorch| per output on a check batch (None when onnxruntime is absent)
    max_abs_diff: dict[str, float] | None = None


class ExportView(nn.Module):
    """The model as ONNX sees it: uint8 RGB views (N, S, S, 3) in; probabilities, logits and each map
    out, in a fixed order. Normalisation and the temperature are part of the graph."""

    def __init__(self, model: nn.Module, meta: CheckpointMeta):
        super().__init__()
        self.model = with_maps(model, meta.positive_index)
        self.layers = list(self.model.attention_layers)
        self.register_buffer("mean", torch.tensor(meta.preprocessing.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(meta.preprocessing.std).view(1, 3, 1, 1))
        self.temperature = meta.softmax_temperature

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = (image.permute(0, 3, 1, 2).float() / 255.0 - self.mean) / self.std
        output = self.model(x)
        probabilities = torch.softmax(output.logits / self.temperature, dim=-1)
        return (probabilities, output.logits, *(output.attention[name] for name in self.layers))


def onnx_output_names(view: ExportView) -> list[str]:
    return ["probabilities", "logits", *(f"attention_{name}" for name in view.layers)]


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
    view = ExportView(model.cpu(), meta).eval()
    size = meta.preprocessing.image_size
    names = onnx_output_names(view)
    # batch 2 as the example so that torch.export does not specialise the batch axis to 1
    example = torch.randint(0, 256, (2, size, size, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
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
        f"attnmel {meta.architecture.name} ({meta.architecture.backbone}): input '{ONNX_INPUT}' uint8 RGB "
        f"(N, {size}, {size}, 3), the view made by attnmel.export.onnx_view; outputs {', '.join(names)}."
    )
    props = {
        "input_format": f"uint8 RGB pixels (N, {size}, {size}, 3): the model's view, made by attnmel.export.onnx_view "
                        "with the numbers in 'preprocessing'",
        "temperature": str(meta.softmax_temperature),
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
    if result.max_abs_diff is not None and not all(np.isfinite(v) and v < 1e-3 for v in result.max_abs_diff.values()):
        raise AttnmelError(f"{target}: onnxruntime and PyTorch disagree by {result.max_abs_diff}; the export is not "
                           "trustworthy (report it with the checkpoint).")
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
    log: Callable[[str], None] | None = print,
) -> ExportResult:
    """Export ``checkpoint`` (None: the shipped model) to ``output_dir`` (default: ``export/`` beside it,
    or in the working folder for the shipped model) as ``<stem>.<fmt>`` + ``<stem>.md``."""
    if fmt not in FORMATS:
        raise AttnmelError(f"unknown export format {fmt!r}; choose one of {list(FORMATS)}.")
    loaded = load_model(checkpoint, device="cpu", trust_pickle=trust_pickle, legacy=legacy)
    # the network as its checkpoint stores it (the predictor keeps its members in channels_last)
    model, meta, source = loaded.network.to(memory_format=torch.contiguous_format), loaded.meta, loaded.sources[0]
    if source.is_dir():
        source = source / "best.safetensors"
    # the shipped model lives inside the installed package: its export goes to the working folder
    output_dir = Path(output_dir) if output_dir else Path("export") if checkpoint is None else source.parent / "export"
    target = check_output_dir(output_dir) / f"{source.stem}.{fmt}"
    if target.resolve() == source.resolve():
        raise CheckpointError(f"{target}: the export would overwrite its source; choose another --output.")
    run = training_run_file(output_dir)
    if run is not None and output_dir.resolve() != source.parent.resolve():
        raise CheckpointError(f"--output {output_dir}: is another training run's folder (it holds {run.name}), whose "
                              "checkpoints an export never touches; choose another --output (e.g. a new folder).")
    # what an export of this stem may have left here, less the checkpoint being read (exported in its own folder)
    read = {source.resolve(), source.with_suffix(".json").resolve()}
    known = tuple(name for name in (f"{source.stem}.{ext}" for ext in (*FORMATS, "md", "json"))
                  if (output_dir / name).resolve() not in read)
    outputs = OutputSet(output_dir, "export", known=known, log=log)
    outputs.path(target.name)
    outputs.path(target.with_suffix(".md").name)
    if fmt == "safetensors":  # its readable copy of the metadata is written too: one of the set's files
        outputs.path(target.with_suffix(".json").name)
    if fmt == "onnx":
        result = export_onnx(model, meta, target, opset=opset)
    else:
        save_model_checkpoint(target, model, meta.replace(attnmel_version=attnmel_version()))
        result = ExportResult("safetensors", target, target.with_suffix(".md"), ["logits", *cast(list[str], model.attention_layers)])
    card = render_markdown(model_card(meta))
    if fmt == "onnx":
        card += onnx_usage(meta, target.name, result.outputs)
    atomic_write_text(result.card, card)
    outputs.commit(format=fmt, checkpoint=str(source))
    return result


def onnx_usage(meta: CheckpointMeta, file_name: str, outputs: list[str]) -> str:
    """The model card's section on running the ONNX file without attnmel."""
    size = meta.preprocessing.image_size
    return (
        "\n## Using the ONNX file\n\n"
        f"Input `image`: uint8 RGB pixels, shape (N, {size}, {size}, 3), the view the model sees; normalisation "
        f"(mean {list(meta.preprocessing.mean)}, std {list(meta.preprocessing.std)}) and the calibrated softmax "
        f"(temperature {meta.softmax_temperature:.4g}) are inside the graph. Outputs, in order: {', '.join(outputs)}. "
        "Make the view as attnmel does: `from attnmel.export import onnx_view`, or copy it (Pillow and NumPy):\n\n"
        f"```python\n{onnx_view_source()}\n\nimport json, onnxruntime\n"
        f"session = onnxruntime.InferenceSession({file_name!r})\n"
        "pre = json.loads(session.get_modelmeta().custom_metadata_map['preprocessing'])  # numbers only\n"
        "view = onnx_view('lesion.jpg', pre['crop_ratio'], pre['resize'], pre['image_size'])\n"
        "probabilities, logits, *maps = session.run(None, {'image': view[None]})\n```\n"
    )
