"""Options shared by several commands (not a command group itself)."""

from __future__ import annotations

import argparse


def add_trust_pickle(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trust-pickle", action="store_true",
                        help="also load legacy torch.save (pickle) checkpoints; unpickling can run code, "
                             "so only for files from a source you trust")
