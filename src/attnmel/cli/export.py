"""``attnmel export``."""

from __future__ import annotations

import argparse

from attnmel.cli.options import add_checkpoint, add_trust_pickle, checkpoints_or_default, positive_int

#: the library's choices and defaults (``attnmel.export``, ``attnmel.data.transforms``; a test keeps them equal)
FORMATS = ("onnx", "safetensors")
ONNX_OPSET = 18
NORMALIZATION_PRESETS = ("isic2017", "isic2016", "imagenet", "inception")


def register(parser: argparse.ArgumentParser) -> None:
    add_checkpoint(parser, ensemble=False)
    parser.add_argument("--format", choices=FORMATS, default="onnx")
    parser.add_argument("--output", help="folder for <stem>.<format> and <stem>.md (default: export/ beside the "
                                         "checkpoint, or ./export for the shipped model)")
    parser.add_argument("--opset", type=positive_int, default=ONNX_OPSET, help="ONNX opset")
    add_trust_pickle(parser)
    legacy = parser.add_argument_group("legacy pickles without attnmel metadata (with --trust-pickle)")
    legacy.add_argument("--legacy-attention", choices=("sigmoid", "softmax"), default="sigmoid",
                        help="attention normalisation the model was trained with (original code: softmax "
                             "if trained with --normalize_attn)")
    legacy.add_argument("--legacy-normalization", default="isic2017",
                        help=f"mean/std preset ({', '.join(NORMALIZATION_PRESETS)}) or a stats JSON")
    parser.set_defaults(handler=_export)


def _export(args: argparse.Namespace) -> int:
    from attnmel.checkpoints.legacy import LegacyAssumptions
    from attnmel.export import export_model

    checkpoint = checkpoints_or_default(args.checkpoint)
    legacy = LegacyAssumptions(normalize=args.legacy_attention, normalization=args.legacy_normalization)
    result = export_model(checkpoint, args.output, args.format, trust_pickle=args.trust_pickle,
                          legacy=legacy, opset=args.opset)
    print(f"wrote {result.model} (outputs: {', '.join(result.outputs)}) and its model card {result.card}")
    if result.max_abs_diff is not None:
        worst = ", ".join(f"{name} {diff:.2e}" for name, diff in result.max_abs_diff.items())
        print(f"onnxruntime vs PyTorch, max |diff|: {worst}")
    return 0
