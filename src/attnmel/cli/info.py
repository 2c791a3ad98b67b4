"""``attnmel info``: registered models, backbones, pretrained models and presets."""

from __future__ import annotations

import argparse


def register(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(handler=_info)


def _info(args: argparse.Namespace) -> int:
    from attnmel.checkpoints.pretrained import DEFAULT_TAG, PRETRAINED
    from attnmel.config import list_presets
    from attnmel.models import list_backbones, list_models, model_entry
    from attnmel.models.backbones import BACKBONES

    print("models:")
    for name in list_models():
        entry = model_entry(name)
        print(f"  {name:<10} {entry.paper_row:<13} {entry.description}; options: {', '.join(entry.options)}")
    print("backbones (for gap, melcnn, attnmel):")
    for name in list_backbones():
        spec = BACKBONES[name]
        print(f"  {name:<16} gates {'/'.join(spec.local_names)}, global {spec.global_name}  ({spec.description})")
    print("pretrained models (--checkpoint TAG; the default answers when no --checkpoint is given):")
    for tag, weights in PRETRAINED.items():
        print(f"  {tag}{'  (default)' if tag == DEFAULT_TAG else ''}  {weights.description}")
    print("presets (--config NAME):")
    for name in list_presets():
        print(f"  {name}")
    return 0
