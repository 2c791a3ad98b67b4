"""Process supervision: each task runs in a process group of its own, ended with everything it
started when its time is up or when the suite itself ends."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import threading

from .settings import BENCHMARKS, REPO, Settings


def run_child(command: list[str], timeout: float, log, prefix: str, env: dict) -> tuple[str, list[str]]:
    """Run ``command`` in a process group of its own, its output streamed to ``log``; at ``timeout``
    the whole group (DataLoader workers, a DDP child) is ended. Returns ("ok" | "failed" | "cut", the last lines)."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                            start_new_session=True, env=env, cwd=REPO)
    tail: collections.deque[str] = collections.deque(maxlen=40)

    def pump() -> None:
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            log(prefix + line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    status = "cut"
    try:
        code = proc.wait(timeout=max(timeout, 1))
        status = "ok" if code == 0 else "failed"
    except subprocess.TimeoutExpired:
        pass
    finally:  # also when this process is stopped (SIGTERM -> SystemExit): the task's group goes with it
        if proc.poll() is None or status == "cut":
            end_group(proc)
    reader.join(timeout=5)
    return status, list(tail)


def end_group(proc: subprocess.Popen) -> None:
    for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            if sig == signal.SIGKILL:
                return
        except subprocess.TimeoutExpired:
            continue
    try:  # stragglers of the group (workers that ignored SIGTERM) once its leader is gone
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def die_with_parent() -> None:
    """A task's process ends when the process that started it does, even one killed outright (the
    device tool's time limit), so nothing keeps the GPU busy after the suite (Linux; else a no-op)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def child_env(s: Settings) -> dict:
    env = dict(os.environ)
    paths = [*s.python_path, str(REPO / "src"), str(BENCHMARKS), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env
