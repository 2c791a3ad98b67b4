"""Where pixel noise grows: how far +-1 grey level moves a backbone's stride-8/16/32 features.

    python benchmarks/noise_gain.py --weights ../shared/weights/mobilenet_v2_imagenet_features.pth
    python benchmarks/noise_gain.py --weights W --checkpoint runs/x/seed0 --checkpoint runs/y/seed0

Rows: the ImageNet backbone (``--weights``) with its own batch-norm statistics; the same weights with
the statistics re-estimated on ``--estimate`` training images, which is where a run in torch's default
batch-norm mode ends up before its weights move; and the backbone of each ``--checkpoint`` (default:
the shipped model). Each cell is ||f(x + noise) - f(x)|| / ||f(x) - mean f(x)|| over ``--images``
validation images seen through the first checkpoint's preprocessing: the share of the features'
spread over the images that one grey level of noise moves. It is how the amplification was traced
to the statistics rather than the trained weights (``train.batchnorm_statistics``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stability import DEFAULT_DATA, plus_minus_one, split_images  # noqa: E402


def relative_change(backbone: torch.nn.Module, clean: torch.Tensor, noisy: torch.Tensor) -> dict[str, float]:
    """Per tap: the change noise makes over the spread of the clean features around their channel means."""
    with torch.no_grad():
        before, after = backbone(clean), backbone(noisy)
    return {name: float((after[name] - feature).norm() / (feature - feature.mean((0, 2, 3), keepdim=True)).norm())
            for name, feature in before.items()}


def reestimate_statistics(backbone: torch.nn.Module, images: torch.Tensor, batch_size: int = 32) -> None:
    """Replace every batch-norm running statistic by its average over ``images`` (weights unchanged)."""
    for module in backbone.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # a plain average over the batches
    backbone.train()
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            backbone(images[start:start + batch_size])
    backbone.eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, required=True, help="ImageNet state dict of the checkpoint's backbone")
    parser.add_argument("--checkpoint", action="append", help="checkpoint, run folder or tag (repeatable; "
                                                             "default: the shipped model)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--images", type=int, default=32, help="validation images whose features are compared")
    parser.add_argument("--estimate", type=int, default=256, help="training images that re-estimate the statistics")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import attnmel
    from attnmel.data.images import read_image
    from attnmel.models import create_backbone

    torch.manual_seed(args.seed)
    checkpoints = [attnmel.load_model(source, device="cpu") for source in (args.checkpoint or [None])]
    view = checkpoints[0].preprocessing
    backbone_name = checkpoints[0].meta.architecture.backbone

    def views(images: list[np.ndarray]) -> torch.Tensor:
        return torch.stack([view(image) for image in images])

    def decoded(paths: list[Path]) -> list[np.ndarray]:
        return [np.asarray(read_image(path)) for path in paths]

    rng = np.random.default_rng(args.seed)
    val_images = decoded(split_images(args.data, "val")[: args.images])
    clean = views(val_images)
    noisy = views([plus_minus_one(image, rng) for image in val_images])

    rows = []
    imagenet = create_backbone(backbone_name, args.weights).eval()
    rows.append((f"ImageNet {backbone_name}, its own statistics", relative_change(imagenet, clean, noisy)))
    reestimate_statistics(imagenet, views(decoded(split_images(args.data, "train")[: args.estimate])))
    rows.append((f"the same, statistics of {args.estimate} training images", relative_change(imagenet, clean, noisy)))
    for source, loaded in zip(args.checkpoint or ["the shipped model"], checkpoints, strict=True):
        network = loaded.predictor.models[0].float().eval()
        rows.append((str(source), relative_change(network.backbone, clean, noisy)))

    taps = list(rows[0][1])
    print(f"+-1 grey level on {len(val_images)} {args.data.name} val images: change of the features over their spread\n")
    print("| backbone | " + " | ".join(f"{tap} (stride {8 * 2 ** i})" for i, tap in enumerate(taps)) + " |")
    print("|---|" + "---:|" * len(taps))
    for label, values in rows:
        print(f"| {label} | " + " | ".join(f"{values[tap]:.3f}" for tap in taps) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
