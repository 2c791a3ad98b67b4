"""One prepared GPU run: every figure that needs a GPU, from one command, inside a time budget.

    python3 benchmarks/gpu_suite.py --out $OUT                    # on the GPU machine: benchmarks/RESULTS.md, "GPU suite"
    python benchmarks/gpu_suite.py --smoke --out /tmp/gpu-suite   # the same steps on a CPU, tiny settings (~2 min)

Tasks run in this order, cheap and decisive first (``plan``); each runs in a process of its own
whose process group is killed when its time budget (or the whole run's) is spent, and
``results.json`` and ``RESULTS-gpu.md`` are rewritten in ``--out`` after every task, so a run
cut short still returns what finished:

  env      the card, driver, torch / CUDA / cuDNN / NCCL versions, the measured bf16 matmul rate,
           the packages, and an estimate of every quality run from its FLOPs
  smoke    every code path on the device: each model x backbone forward/backward in bf16 with
           channels_last (against fp32), the device-side augmentation against the per-sample CPU
           pipeline, the decode-once cache, the Trainer end to end with every fast option (and
           --resume, and evaluation with attention Jaccard), one DDP step (NCCL on a GPU, gloo on a
           CPU) against a plain step. The first broken path that a later task needs stops the run;
           one that none needs (another model, DDP) fails the task loudly and the run goes on
  speed    benchmarks/train_speed.py's table: reference data path vs attnmel's on 1024x768 JPEGs
           with a profile of the training step, then 4000x3000, then attnmel's path with torch.compile
  quality  ROWS x seeds on ISIC 2017 (train -> val): the shipped-model recipe and the GAP baseline
           first (seed 0 of each), AttnMel-CNN-Lesion on VGG-16-BN from scratch (the paper's recipe),
           then the other seeds; a run that its estimate says cannot finish in the time left is
           skipped, not started
  report   results.json, RESULTS-gpu.md, suite.log, profile.txt and the best checkpoint of each
           MobileNetV2 row in fp16 (at most 8 files of 16 MiB each come back from the machine)

Quality runs use attnmel's fast path (``FAST``: cache, device pipeline, bf16, channels_last,
non-deterministic cuDNN) with each preset's own batch size and schedule; RESULTS-gpu.md says so.
Finished runs in ``--work`` are reused and unfinished ones resumed, so a rerun on a warm machine
picks up where the last one stopped.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from .child import child_main
from .settings import REPO, ROWS, SMOKE_TOTAL_BUDGET, TOTAL_BUDGET, Settings, SuiteError
from .suite import Suite
from .wheels import install_wheels


def default_path(*candidates: Path) -> str:
    return str(next((c for c in candidates if c.exists()), candidates[0]))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        return child_main(argv[1])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped: end the running task's process group
    prepared = REPO / ".data" / "gpu-suite"
    shared = REPO.parent / "shared"
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--out", required=True, help="where results.json, RESULTS-gpu.md, the log and checkpoints go")
    parser.add_argument("--work", help="runs, generated JPEGs, caches (default: <tmp>/attnmel-gpu-suite[-smoke])")
    parser.add_argument("--data", help="ISIC 2017 folder (default: .data/gpu-suite/isic2017, else ../shared/data/isic2017; "
                        "--smoke: the bundled sample)")
    parser.add_argument("--weights", help="ImageNet MobileNetV2 state dict (default: .data/gpu-suite/"
                        "mobilenet_v2_imagenet_features.pth, else ../shared/weights/...)")
    parser.add_argument("--smoke", action="store_true", help="the same tasks on tiny settings (a CPU, about 2 minutes)")
    parser.add_argument("--budget", type=float, help=f"seconds for the whole run (default {TOTAL_BUDGET}; --smoke "
                        f"{SMOKE_TOTAL_BUDGET})")
    parser.add_argument("--steps", nargs="+", default=["smoke", "speed", "compile", "quality"],
                        choices=["smoke", "speed", "compile", "quality"], help="which tasks (env and report always run)")
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--seeds", nargs="+", type=int, help="quality seeds (default: each row's)")
    parser.add_argument("--extra-eval", action="append", default=[], metavar="DATA:SPLIT",
                        help="also score every quality checkpoint on this dataset folder's split (repeatable)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))
    parser.add_argument("--wheels", help="install the wheels in this folder (--no-index) before anything else")
    parser.add_argument("--keep-going", action="store_true", help="run the other tasks even when env or smoke fails")
    args = parser.parse_args(argv)

    data = args.data or (str(REPO / "src" / "attnmel" / "sample_data" / "isic2017") if args.smoke else
                         default_path(prepared / "isic2017", shared / "data" / "isic2017"))
    weights = args.weights or default_path(prepared / "mobilenet_v2_imagenet_features.pth",
                                            shared / "weights" / "mobilenet_v2_imagenet_features.pth")
    for item in args.extra_eval:
        if ":" not in item or not Path(item.rsplit(":", 1)[0]).exists():
            parser.error(f"--extra-eval {item!r}: give DATA:SPLIT with an existing dataset folder, e.g. ../isic2016:test")
    if not Path(data).is_dir():
        parser.error(f"--data {data}: no such folder; run `python benchmarks/gpu_prepare.py` beside the code or pass --data")
    out = Path(args.out)
    work = Path(args.work or Path(tempfile.gettempdir()) / f"attnmel-gpu-suite{'-smoke' if args.smoke else ''}")
    try:
        out.mkdir(parents=True, exist_ok=True)
        work.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        parser.error(f"--out/--work: cannot create the folder ({exc.strerror})")
    python_path = []
    if args.wheels:
        try:
            install_wheels(Path(args.wheels), work / "site")
        except (SuiteError, subprocess.CalledProcessError) as exc:
            print(f"gpu_suite: {exc}", file=sys.stderr)
            return 2
        python_path.append(str(work / "site"))
    settings = Settings(out=str(out.resolve()), work=str(work.resolve()), data=str(Path(data).resolve()),
                        weights=str(Path(weights).resolve()) if weights else None, device=args.device,
                        workers=args.workers, smoke=args.smoke,
                        budget=args.budget or (SMOKE_TOTAL_BUDGET if args.smoke else TOTAL_BUDGET), steps=args.steps,
                        rows=args.rows, seeds=args.seeds, extra_eval=[str(Path(e.rsplit(':', 1)[0]).resolve()) + ":" +
                                                                      e.rsplit(":", 1)[1] for e in args.extra_eval],
                        keep_going=args.keep_going, python_path=python_path)
    return Suite(settings, argv).run()
