"""Peak memory of ``attnmel serve`` while concurrent clients upload huge 16-bit PNGs.

    python benchmarks/serve_memory.py                       # 16 uploads of a 16-bit 9440 x 9470 PNG, shipped model
    python benchmarks/serve_memory.py --clients 16 --width 9440 --height 9470 --threads 1

A real server process on loopback; the upload is a smooth 16-bit gradient (a few hundred KB of PNG,
89 Mpx of pixels). The table gives the server's resident memory when idle (after one warm-up
request), its peak while the uploads are served (sampled every 10 ms from /proc, and the kernel's
high-water mark reset just before), their ratio (target: under 1.5), and the answers' status codes.
Linux only (/proc).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for process {pid}")


def sixteen_bit_png(width: int, height: int) -> bytes:
    ramp = (np.linspace(0, 65535, width, dtype=np.float64)[None, :] * np.linspace(0.2, 1, height)[:, None])
    buffer = io.BytesIO()
    Image.fromarray(ramp.astype(np.uint16)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def upload_all(url: str, data: bytes, clients: int) -> list[int]:
    async with httpx.AsyncClient(timeout=600) as http:
        responses = await asyncio.gather(*(
            http.post(url, files={"file": ("huge16.png", data, "image/png")}) for _ in range(clients)))
    return [r.status_code for r in responses]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--width", type=int, default=9440)
    parser.add_argument("--height", type=int, default=9470)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--checkpoint", help="default: the shipped model")
    args = parser.parse_args(argv)
    data = sixteen_bit_png(args.width, args.height)
    port = free_port()
    command = [sys.executable, "-m", "attnmel", "serve", "--port", str(port), "--threads", str(args.threads),
               "--no-access-log", "--max-upload-mb", "50"] + (["--checkpoint", args.checkpoint] if args.checkpoint else [])
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the server did not start")
            time.sleep(0.5)
        sample = sorted((REPO / "src/attnmel/sample_data/isic2017/ISIC-2017_Validation_Data").glob("*.jpg"))[0]
        httpx.post(f"{base}/predict", files={"file": (sample.name, sample.read_bytes(), "image/jpeg")}, timeout=120)
        time.sleep(1.0)
        idle = rss_mb(server.pid)
        try:
            Path(f"/proc/{server.pid}/clear_refs").write_text("5")  # reset the high-water mark
            hwm_reset = True
        except OSError:
            hwm_reset = False
        peak, stop = [idle], threading.Event()

        def sample_rss():
            while not stop.is_set():
                peak.append(rss_mb(server.pid))
                time.sleep(0.01)

        sampler = threading.Thread(target=sample_rss, daemon=True)
        sampler.start()
        started = time.perf_counter()
        statuses = asyncio.run(upload_all(f"{base}/predict?images=false", data, args.clients))
        seconds = time.perf_counter() - started
        stop.set()
        sampler.join()
        high = max(max(peak), rss_mb(server.pid, "VmHWM") if hwm_reset else 0)
    finally:
        server.terminate()
        server.wait(timeout=60)
    print(f"{args.clients} concurrent uploads of a 16-bit {args.width} x {args.height} PNG ({len(data) / 1e3:.0f} KB, "
          f"{args.width * args.height / 1e6:.1f} Mpx); server with {args.threads} torch thread(s)\n")
    print("| idle RSS MiB | peak RSS MiB | peak / idle | seconds | statuses |")
    print("|---:|---:|---:|---:|---|")
    counts = {code: statuses.count(code) for code in sorted(set(statuses))}
    print(f"| {idle:.0f} | {high:.0f} | {high / idle:.2f} | {seconds:.1f} | "
          + ", ".join(f"{n} x {code}" for code, n in counts.items()) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
