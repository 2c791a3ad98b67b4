"""Recipes side by side, as their yardsticks judged them: the table a recipe decision is made on.

    python benchmarks/yardstick.py /work/runs/yardstick/isic-only /work/runs/yardstick/balanced \
        --names "ISIC 2017 only" "HAM10000 at weight 0.2"

Each ``attnmel yardstick --runs`` folder (finished, same seed) against the first: ROC AUC on every
pooled image out of fold and on each held-out site (fold models averaged), the paired difference
with its DeLong interval and p-value. Prints a markdown table; reads only the folders' cached scores.
"""

from __future__ import annotations

import argparse
import sys

from attnmel.errors import AttnmelError
from attnmel.yardstick import compare_recipes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="attnmel yardstick --runs folders; the first is the baseline")
    parser.add_argument("--names", nargs="+", help="one name per folder (default: the folders' names)")
    parser.add_argument("--seed", type=int, default=0, help="the seed to compare (default 0)")
    args = parser.parse_args(argv)
    try:
        comparison = compare_recipes(args.runs, args.seed, args.names)
    except AttnmelError as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    print(comparison.to_markdown(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
