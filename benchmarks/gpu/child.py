"""A task's own process: reads its spec, runs the task, saves its result as it goes."""

from __future__ import annotations

import json
import signal
import sys
import traceback
from pathlib import Path

from .ddp import task_ddp
from .env import task_env
from .files import write_json
from .quality import task_quality
from .settings import Settings, Task
from .smoke import task_smoke
from .speed import task_speed
from .supervise import die_with_parent


def child_main(spec_path: str) -> int:
    die_with_parent()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run_child's finally then ends a DDP child too
    payload = json.loads(Path(spec_path).read_text())
    s, task = Settings(**payload["settings"]), Task(**payload["task"])
    result_path = Path(s.work) / "results" / f"{task.name}.json"
    result: dict = {}

    def save(**values) -> None:
        result.update(values)
        write_json(result_path, result)

    try:
        {"env": task_env, "smoke": task_smoke, "speed": task_speed, "compile": task_speed,
         "quality": task_quality, "ddp": task_ddp}[task.kind](s, task, save)
    except Exception as exc:  # noqa: BLE001 - one line for the table, the traceback for the log
        traceback.print_exc()
        message = " ".join(f"{type(exc).__name__}: {exc}".split())
        save(error=message[:500])
        print(f"FAILED: {message[:500]}", flush=True)
        return 1
    return 0
