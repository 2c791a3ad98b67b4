"""Fit the trust fields of a shipped model (features only, no retraining) and rewrite its package file.

    python scripts/fit_trust.py --data ../shared/data/isic2017 [--checkpoint FILE] [--figures FILE]

``attnmel.evaluation.trust.fit_trust`` fits the OOD detector on the training images' pooled features
and its threshold (<= 5% of val flagged), the split conformal sets and the operating point (85%
sensitivity) on val. The tensors stay as they are (fp16); the metadata gains ``ood_detector``,
``conformal`` and ``operating_point`` and, with ``--figures`` (the JSON ``benchmarks/trust.py
--json`` writes), the measured figures for the card's "When not to trust it". The card ``<tag>.md``
is rewritten and, where the ``registry.json`` beside the file lists it, its entry gets the new sha256,
so the package verifies the new file.
Rerun it after scripts/ship_model.py for every new shipped model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from attnmel.checkpoints import pretrained
from attnmel.checkpoints.card import model_card, render_markdown
from attnmel.checkpoints.format import checkpoint_paths, read_metadata, update_metadata
from attnmel.evaluation.trust import fit_trust
from attnmel.inference import DataSplit, InferenceSettings
from attnmel.io import atomic_write_text, file_sha256


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the dataset whose val split sets the thresholds "
                                                                 "(and whose train split the model learnt from)")
    parser.add_argument("--train-data", type=Path, action="append", default=[],
                        help="another dataset the model trained on (its train split also fits the OOD detector)")
    parser.add_argument("--tag", default=pretrained.DEFAULT_TAG)
    parser.add_argument("--checkpoint", type=Path, help="default: the package file of --tag")
    parser.add_argument("--figures", type=Path, help="measured trust figures (benchmarks/trust.py --json) for the card")
    args = parser.parse_args(argv)
    entry = pretrained.get_pretrained(args.tag)
    target = args.checkpoint or entry.path
    old_sha = file_sha256(target)
    trains = [DataSplit(path, "train") for path in [args.data, *args.train_data]]
    fields = fit_trust(target, trains, DataSplit(args.data, "val"), InferenceSettings(device="cpu"))
    release = dict(read_metadata(target).release or {})
    if args.figures:
        release["trust_figures"] = json.loads(args.figures.read_text())
    meta = update_metadata(target, **fields, release=release or None)
    checkpoint_paths(target)[1].unlink(missing_ok=True)  # the package keeps the weights (metadata embedded) and the card
    atomic_write_text(target.with_suffix(".md"), render_markdown(model_card(meta)))
    new_sha = file_sha256(target)
    registry = target.parent / pretrained.REGISTRY_FILE
    listed = [e.tag for e in pretrained.Registry.read(registry).weights.values() if e.file == target.name]
    for tag in listed:
        pretrained.register(target.parent, tag)
        print(f"registry {registry}: '{tag}' now names sha256 {new_sha} (was {old_sha})")
    ood, point = fields["ood_detector"], fields["operating_point"]
    print(f"OOD threshold {ood.threshold:.4g} flags {ood.flagged_share:.1%} of {ood.threshold_on}; "
          f"threshold {point.threshold:.4f} ({point.describe()}): sensitivity {point.sensitivity:.3f}, "
          f"specificity {point.specificity:.3f}; conformal quantile {fields['conformal'].quantile:.4f}")
    print(f"wrote {target} and {target.with_suffix('.md')}; sha256 {new_sha}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
