"""Load test of ``attnmel serve`` on loopback: concurrent clients, latency, throughput, peak memory.

For each mode a real server process is started (``python -m attnmel serve``), warmed up, then
``--clients`` concurrent clients send ``--requests`` ``POST /predict`` uploads of real ISIC images
from the bundled sample (full responses: probabilities, maps, PNG overlays). Bounded: every mode
stops after ``--requests`` requests or ``--time-limit`` seconds, whichever comes first.

    python benchmarks/serve_load.py                         # the shipped model, batched vs direct
    python benchmarks/serve_load.py --checkpoint runs/x/best.safetensors --modes batched

Modes: ``batched`` (``--max-batch 16``: concurrent requests share one forward pass) and
``direct`` (``--max-batch 1``: one forward pass per request, in the thread pool).
Peak RSS is the server's ``VmHWM`` from /proc (Linux), model loading included.
Prints one table; the client runs on the same machine and competes for its cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "src" / "attnmel" / "sample_data" / "isic2017" / "ISIC-2017_Validation_Data"
MODES = {"batched": ["--max-batch", "16"], "direct": ["--max-batch", "1"]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def peak_rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc): cost per request, whatever else runs."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(checkpoint: str | None, extra: list[str], threads: int | None, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "attnmel", "serve", "--port", str(port), "--no-access-log", *extra]
    if checkpoint:
        command += ["--checkpoint", checkpoint]
    if threads:
        command += ["--threads", str(threads)]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return process, base
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    process.kill()
    raise SystemExit("server did not start within 300 s")


async def load(base: str, images: list[tuple[str, bytes]], requests: int, clients: int, time_limit: float):
    latencies: list[float] = []
    errors: list[str] = []
    issued = 0
    deadline = time.monotonic() + time_limit
    # idle connections expire on the client before uvicorn's 5 s keep-alive closes them on the server,
    # so that no request is sent on a connection the server is closing
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients, keepalive_expiry=2)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:

        async def worker() -> None:
            nonlocal issued
            while issued < requests and time.monotonic() < deadline:
                name, data = images[issued % len(images)]
                issued += 1
                started = time.perf_counter()
                try:
                    response = await client.post("/predict", files={"file": (name, data, "image/jpeg")})
                    if response.status_code != 200 or "probabilities" not in response.json():
                        errors.append(f"{response.status_code}: {response.text[:200]}")
                        continue
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))
                    continue
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return latencies, errors, elapsed


def run_mode(mode: str, args: argparse.Namespace, images: list[tuple[str, bytes]]) -> dict:
    log = Path(args.log_dir) / f"serve-{mode}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    process, base = start_server(args.checkpoint, MODES[mode], args.threads, log)
    try:
        for name, data in images[: args.warmup]:
            httpx.post(f"{base}/predict", files={"file": (name, data, "image/jpeg")}, timeout=120).raise_for_status()
        server_cpu, client_cpu = cpu_seconds(process.pid), time.process_time()
        latencies, errors, elapsed = asyncio.run(load(base, images, args.requests, args.clients, args.time_limit))
        server_cpu, client_cpu = cpu_seconds(process.pid) - server_cpu, time.process_time() - client_cpu
        health = httpx.get(f"{base}/health", timeout=10).json()
        alive = process.poll() is None
        rss = peak_rss_mib(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)
    latencies.sort()
    ok = len(latencies)
    return {
        "mode": mode, "ok": ok, "errors": len(errors), "first_error": errors[0] if errors else "",
        "p50_ms": 1000 * statistics.median(latencies) if ok else float("nan"),
        "p95_ms": 1000 * latencies[min(ok - 1, int(0.95 * ok))] if ok else float("nan"),
        "throughput": ok / elapsed, "seconds": elapsed, "peak_rss_mib": rss, "alive": alive,
        "server_cpu_ms": 1000 * server_cpu / max(ok, 1), "client_cpu_ms": 1000 * client_cpu / max(ok, 1),
        "mean_batch": health["inference"].get("mean_batch_size"), "model": health["model"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="model to serve (default: the shipped model)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--time-limit", type=float, default=600, help="seconds per mode at most")
    parser.add_argument("--modes", nargs="+", choices=sorted(MODES), default=["batched", "direct"])
    parser.add_argument("--threads", type=int, help="torch threads of the server")
    parser.add_argument("--warmup", type=int, default=8)
    parser.add_argument("--log-dir", default="runs/serve-load")
    args = parser.parse_args()
    images = [(p.name, p.read_bytes()) for p in sorted(SAMPLE.glob("*.jpg"))]
    load_before = os.getloadavg()[0]
    rows = [run_mode(mode, args, images) for mode in args.modes]
    load_after = os.getloadavg()[0]
    model = rows[0]["model"]
    print(f"\nmodel: {model['name']} ({model['backbone']}, {model['image_size']} px) from {args.checkpoint or 'the shipped model'}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; {args.clients} clients, "
          f"{args.requests} requests per mode (limit {args.time_limit:.0f} s), {len(images)} distinct ISIC images; "
          f"server torch threads: {args.threads or 'default'}; 1-min load average {load_before:.1f} before, "
          f"{load_after:.1f} after (other processes share the cores)\n")
    print("| mode | ok | errors | p50 ms | p95 ms | req/s | mean batch | server CPU ms/req | client CPU ms/req "
          "| server peak RSS MiB | server alive |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        batch = f"{r['mean_batch']:.1f}" if r["mean_batch"] else "1"
        print(f"| {r['mode']} | {r['ok']} | {r['errors']} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['throughput']:.1f} "
              f"| {batch} | {r['server_cpu_ms']:.0f} | {r['client_cpu_ms']:.0f} | {r['peak_rss_mib']:.0f} "
              f"| {'yes' if r['alive'] else 'NO'} |")
    for r in rows:
        if r["errors"]:
            print(f"{r['mode']}: first error: {r['first_error']}")


if __name__ == "__main__":
    main()
