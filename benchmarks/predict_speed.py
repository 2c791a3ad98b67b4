"""CPU speed of answering: ``attnmel.load_model().predict`` against a plain torchvision MobileNetV2.

    python benchmarks/predict_speed.py                 # 50 bundled unseen ISIC 2016 images, 2 torch threads
    python benchmarks/predict_speed.py --images DIR --count 50 --threads 1 [--checkpoint FILE]

Rows, all on the same images at the shipped model's input size and the same thread count:
- plain torchvision MobileNetV2 (random weights; speed does not depend on them), forward only, on
  images already preprocessed: the floor a MobileNetV2 user would compare with; and the same in
  channels_last, the memory layout attnmel runs its models in;
- a plain GAP + linear classifier on the model's own trunk (its backbone and input low-pass, random
  weights) in channels_last, forward only: what the attention heads and maps cost on top of it;
- the same with decoding and preprocessing each image (what answering a file costs anywhere);
- ``model.predict(paths)``: decoding, the model's own preprocessing, AttnMel-CNN with its
  attention maps, results in the image's coordinates (in-process, after one warm-up call);
- the same without the OOD score and the conformal set (a copy of the model whose metadata holds
  neither): the OOD score reuses the forward pass's pooled features, so the two rows should agree
  within noise;
- ``attnmel predict`` end to end (a new process: imports, loading, figures and report), with and
  without figures.
The ratio column is images/s against the forward-only row; the target for ``model.predict`` is 0.8.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torchvision  # noqa: E402

import attnmel  # noqa: E402
from attnmel.demo import unseen_data_path  # noqa: E402
from attnmel.inference.prediction import decode_input  # noqa: E402


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=unseen_data_path() / "ISBI2016_ISIC_Part3_Test_Data")
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--checkpoint", help="checkpoint, run folder or tag (default: the shipped model)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    paths = sorted(args.images.glob("*.jpg"))[: args.count]
    if not paths:
        parser.error(f"--images {args.images}: no .jpg files there")
    model = attnmel.load_model(args.checkpoint, device="cpu")
    pre = model.preprocessing
    untrusted = dataclasses.replace(
        model, metadata=[meta.replace(ood_detector=None, conformal=None) for meta in model.metadata])
    plain = torchvision.models.mobilenet_v2(weights=None).eval()
    plain_channels_last = copy.deepcopy(plain).to(memory_format=torch.channels_last)
    architecture = model.metadata[0].architecture
    trunk = {key: architecture.options[key] for key in ("backbone", "input_blur") if key in architecture.options}
    same_trunk = attnmel.create_model("gap", architecture.num_classes, weights=None, **trunk).eval()
    same_trunk = same_trunk.to(memory_format=torch.channels_last)

    def preprocessed():
        return [pre(decode_input(p)[0]) for p in paths]

    tensors = preprocessed()

    @torch.no_grad()
    def forward(batches, network=plain):
        for start in range(0, len(batches), args.batch_size):
            network(torch.stack(batches[start:start + args.batch_size]))

    model.predict([str(p) for p in paths[:4]])  # warm-up
    forward(tensors[:4])
    forward(tensors[:4], plain_channels_last)
    forward(tensors[:4], same_trunk)
    rows = [
        ("torchvision MobileNetV2, forward only (preprocessed)", best_of(args.repeats, lambda: forward(tensors))),
        ("torchvision MobileNetV2 in channels_last, forward only",
         best_of(args.repeats, lambda: forward(tensors, plain_channels_last))),
        (f"GAP + linear on the model's trunk ({', '.join(f'{k} {v}' for k, v in trunk.items())}), channels_last, "
         "forward only", best_of(args.repeats, lambda: forward(tensors, same_trunk))),
        ("torchvision MobileNetV2, decode + preprocess + forward",
         best_of(args.repeats, lambda: forward(preprocessed()))),
        ("attnmel model.predict(paths) (AttnMel-CNN + maps)",
         best_of(args.repeats, lambda: model.predict([str(p) for p in paths], batch_size=args.batch_size))),
        # the same without the OOD score and the prediction set: their cost
        ("attnmel model.predict(paths) without OOD score and prediction set",
         best_of(args.repeats, lambda: untrusted.predict([str(p) for p in paths], batch_size=args.batch_size))),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    for label, extra in (("attnmel predict CLI, new process, figures + report", []),
                         ("attnmel predict CLI, new process, --no-figures", ["--no-figures"])):
        with tempfile.TemporaryDirectory() as folder:
            for path in paths:
                os.symlink(path.resolve(), Path(folder) / path.name)
            command = [sys.executable, "-m", "attnmel", "predict", folder, "--output", str(Path(folder) / "out"),
                       "--device", "cpu", "--batch-size", str(args.batch_size), *extra,
                       *(["--checkpoint", args.checkpoint] if args.checkpoint else [])]
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, env=env)
            rows.append((label, time.perf_counter() - started))
    floor = len(paths) / rows[0][1]
    print(f"{len(paths)} images from {args.images}, input {pre.image_size} px, {args.threads} torch thread(s), "
          f"batch {args.batch_size}; {platform.machine()} CPU, torch {torch.__version__}; best of {args.repeats} "
          "in-process runs (one run for the CLI rows)\n")
    print("| path | seconds | images/s | ratio to forward only |")
    print("|---|---:|---:|---:|")
    for label, seconds in rows:
        rate = len(paths) / seconds
        print(f"| {label} | {seconds:.2f} | {rate:.1f} | {rate / floor:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
