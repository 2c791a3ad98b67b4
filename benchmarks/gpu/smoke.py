"""The smoke task: every code path on the device, each check recorded as it finishes."""

from __future__ import annotations

import time
import traceback
from pathlib import Path

from .checks import check_augment, check_cache, check_model, check_trainer
from .data import smoke_data
from .ddp import check_ddp
from .settings import ROWS, Settings, SuiteError, Task, torch_device


def task_smoke(s: Settings, task: Task, save) -> None:
    """Each code path on the device. A broken path that the later tasks use ends the task at once
    (and, by default, the run); one they do not use (a model they never train, DDP) is recorded and
    the checks go on, so the task fails loudly but the measurements still run."""
    import torch

    device = torch_device(s)
    size, batch, resize = (32, 2, 36) if s.smoke else (224, 8, 256)
    checks: list[dict] = []
    save(device=str(device), backend="nccl" if device.type == "cuda" else "gloo", checks=checks)
    subset = smoke_data(s)
    broken: list[str] = []

    def check(name: str, fn, blocking: bool = True) -> None:
        """Run one check. ``blocking``: the later tasks need this path."""
        save(running=name, blocking=blocking)  # a check that hangs is named when the task is cut
        started = time.perf_counter()
        try:
            detail = fn()
        except Exception as exc:
            checks.append({"name": name, "ok": False, "seconds": time.perf_counter() - started,
                           "detail": " ".join(f"{type(exc).__name__}: {exc}".split())[:300]})
            traceback.print_exc()
            print(f"BROKEN {name}: {checks[-1]['detail']}", flush=True)
            broken.append(name)
            save(checks=checks, note=f"first broken path: {broken[0]}")
            if blocking:
                raise SuiteError(f"smoke check {name} failed: {checks[-1]['detail']}") from None
            return
        checks.append({"name": name, "ok": True, "seconds": time.perf_counter() - started, "detail": detail})
        print(f"ok  {name}: {detail} ({checks[-1]['seconds']:.1f} s)", flush=True)
        save(checks=checks)

    from attnmel.models import list_models, model_entry

    used = models_in_use(s)
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # fp32 references must be fp32
    for name in list_models():
        for backbone in model_entry(name).backbones:
            check(f"model {name}/{backbone}", lambda n=name, b=backbone: check_model(n, b, device, size, batch),
                  blocking=(name, backbone) in used)
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    check("device augmentation = CPU pipeline", lambda: check_augment(subset, device, resize, size))
    check("cache", lambda: check_cache(subset, device, Path(s.work) / "smoke-cache", resize, size))
    check("trainer + resume + evaluate", lambda: check_trainer(s, subset, device, size, resize))
    check("ddp step", lambda: check_ddp(s), blocking=False)  # one GPU trains without DDP
    if broken:
        save(running=None, blocking=False)
        raise SuiteError(f"smoke check: {len(broken)} broken path(s) that the later tasks do not use, first "
                         f"{broken[0]}: {next(c['detail'] for c in checks if c['name'] == broken[0])}")
    save(running=None, note=f"{len(checks)} checks passed")


def models_in_use(s: Settings) -> set[tuple[str, str]]:
    """(model, backbone) of what the later tasks train: the speed benchmark's model and each quality row's."""
    from attnmel.config import load_config

    used = {("attnmel", "mobilenet_v2" if s.smoke else "vgg16_bn")}  # task_speed's model
    for row in s.rows:
        # read for the names only (nothing is loaded); a preset keeping pretrained statistics needs weights named
        config = load_config(ROWS[row]["preset"], [*ROWS[row]["set"], "model.weights=imagenet"])
        used.add((config.model.name, config.model.backbone))
    return used
