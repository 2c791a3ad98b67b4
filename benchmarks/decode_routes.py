"""What a reduced decode of large images does to the model's answer (why attnmel decodes at full size).

    python benchmarks/decode_routes.py                  # 6 ISIC 2017 val images, upscaled, shipped model
    python benchmarks/decode_routes.py --images 10 --checkpoint runs/x

Real ISIC 2017 val images are upscaled (bicubic) to the sizes of ISIC originals and saved as JPEG
(quality 92). Each is answered three ways: decoded at full size (what every door does now), decoded
at a reduced scale by the JPEG decoder (DCT scaling to about twice what the model's crop needs, the
old path-only route), and decoded at full size then box-reduced by an integer factor to the same
size. The table gives, per route, the largest |difference| of the model's view (grey levels) and
of P(melanoma) from the full-size answer.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

import attnmel
from attnmel.data.images import read_image

VAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "isic2017" / "ISIC-2017_Validation_Data"
SIZES = ((1500, 1000), (3000, 2004), (4000, 2672))


def reduced_side(model) -> int:
    """Twice the short side the model's centre crop needs (the old ``decode_side``)."""
    pre = model.preprocessing
    return math.ceil(2 * pre.resize / pre.crop_ratio)


def dct_decode(path: Path, side: int) -> Image.Image:
    image = Image.open(path)
    scale = side / min(image.size)
    image.draft("RGB", (round(image.width * scale), round(image.height * scale)))
    return image.convert("RGB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="checkpoint or run folder (default: the shipped model)")
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--data", type=Path, default=VAL, help="folder of ISIC 2017 val JPEGs")
    args = parser.parse_args(argv)
    model = attnmel.load_model(args.checkpoint, device="cpu")
    side = reduced_side(model)
    worst = {"dct": [0, 0.0], "box": [0, 0.0]}
    print("| image | size | P full | dP dct | dP box | view dct | view box |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for source in sorted(args.data.glob("*.jpg"))[: args.images]:
            for size in SIZES:
                path = Path(tmp) / f"{source.stem}_{size[0]}.jpg"
                Image.open(source).convert("RGB").resize(size, Image.BICUBIC).save(path, quality=92)
                full = model.predict(read_image(path))
                factor = min(size) // side
                routes = {"dct": dct_decode(path, side),
                          "box": read_image(path).reduce(factor) if factor >= 2 else read_image(path)}
                row = {}
                for name, image in routes.items():
                    answer = model.predict(image)
                    grey = int(np.abs(answer.view.astype(int) - full.view.astype(int)).max())
                    dp = answer.probability - full.probability
                    row[name] = (grey, dp)
                    worst[name] = [max(worst[name][0], grey), max(worst[name][1], abs(dp))]
                print(f"| {source.stem} | {size[0]}x{size[1]} | {full.probability:.3f} | {row['dct'][1]:+.3f} | "
                      f"{row['box'][1]:+.3f} | {row['dct'][0]} | {row['box'][0]} |", flush=True)
    print(f"| worst | | | {worst['dct'][1]:.3f} | {worst['box'][1]:.3f} | {worst['dct'][0]} | {worst['box'][0]} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
