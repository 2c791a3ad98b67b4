"""The speed and compile tasks: one size of benchmarks/train_speed.py's table, or its compile row."""

from __future__ import annotations

import time
from pathlib import Path

from .files import write_text
from .settings import Settings, Task, torch_device


def task_speed(s: Settings, task: Task, save) -> None:
    """One size of benchmarks/train_speed.py (reference, then attnmel, then the profile), or its
    compile row; results are saved after each part."""
    import torch
    import train_speed

    device = torch_device(s)
    size_text, images = task.spec["size"], task.spec["images"]
    options = (["--image-size", "32", "--resize", "36", "--batch-size", "4", "--workers", "2", "--threads", "1",
                "--backbone", "mobilenet_v2"] if s.smoke else ["--workers", str(s.workers)])
    args = train_speed.build_parser().parse_args(["--data", s.data, "--images", str(images), "--device", str(device),
                                                  "--sizes", size_text, *options])
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(s.work) / "speed" / f"{size_text}-{images}"
    flops, counted = train_speed.training_flops(args)
    amp = device.type == "cuda"
    save(size=size_text, images=images, model=args.model, backbone=args.backbone, image_size=args.image_size,
         batch_size=args.batch_size, workers=args.workers, flops=flops, counted=counted,
         amp_label="bf16" if amp else "off", channels_last_label="on" if amp else "off")
    started = time.perf_counter()
    size = tuple(int(v) for v in size_text.split("x"))
    data = train_speed.make_inputs(Path(s.data), work / "data", size, images, max(2, args.batch_size // 4), args.workers)
    print(f"inputs: {images} + {max(2, args.batch_size // 4)} JPEGs at {size_text} in {time.perf_counter() - started:.1f} s",
          flush=True)
    if task.kind == "compile":
        backend = "eager" if s.smoke else "inductor"
        if backend != "inductor":  # --smoke: dynamo's graph capture without inductor's minutes of C++ compiling on a CPU
            import functools

            torch.compile = functools.partial(torch.compile, backend=backend)
        ours = {}
        with train_speed._peak_memory(device, ours):
            ours.update(train_speed.run_attnmel(data, args, device, work, True))
        save(attnmel=ours, compile_backend=backend)
        print(f"attnmel + compile: {ours['train']:.1f} img/s", flush=True)
        return
    reference = {}
    with train_speed._peak_memory(device, reference):
        reference.update(train_speed.run_reference(data, args, device))
    save(reference=reference)
    print(f"reference: {reference['train']:.1f} img/s (data path alone {reference['data']:.1f})", flush=True)
    ours = {}
    with train_speed._peak_memory(device, ours):
        ours.update(train_speed.run_attnmel(data, args, device, work, False))
    save(attnmel=ours)
    print(f"attnmel: {ours['train']:.1f} img/s (data path alone {ours['data']:.1f}); b/a {ours['train'] / reference['train']:.2f}x",
          flush=True)
    if task.spec.get("profile"):
        profile = train_speed.profile_attnmel(data, args, device, work, steps=5)
        write_text(Path(s.out) / "profile.txt", f"attnmel training step, {size_text} inputs, batch {args.batch_size}, "
                    f"{device}: {profile['step_ms']:.1f} ms per step\n\n{profile['table']}\n")
        save(profile={k: v for k, v in profile.items() if k != "table"})
        print(f"profile: {profile['step_ms']:.1f} ms per step; top: " + ", ".join(
            f"{t['op']} {100 * t['share']:.0f}%" for t in profile["top"][:4]), flush=True)
