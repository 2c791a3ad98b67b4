"""``attnmel info``: registered models, backbones and presets."""

from __future__ import annotations

import argparse

from attnmel.config import list_presets
from attnmel.models import list_backbones, list_models, model_entry
from attnmel.models.backbones import BACKBONES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("info", help="list models, backbones and config presets")
    parser.set_defaults(handler=_info)


def _info(args: argparse.Namespace) -> int:
    print("models:")
    for name in list_models():
        entry = model_entry(name)
        print(f"  {name:<10} {entry.paper_row:<13} {entry.description}")
    print("backbones (for gap, melcnn, attnmel):")
    for name in list_backbones():
        spec = BACKBONES[name]
        print(f"  {name:<16} gates {'/'.join(spec.local_names)}, global {spec.global_name}  ({spec.description})")
    print("presets (--config NAME):")
    for name in list_presets():
        print(f"  {name}")
    return 0
