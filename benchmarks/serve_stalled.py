"""Server memory while many clients stall mid-upload, and after they disconnect.

    python benchmarks/serve_stalled.py                         # 16 clients x 19 MB, budgets 128 MB and 100000 MB
    python benchmarks/serve_stalled.py --clients 32 --budgets 128 [--checkpoint FILE]

A real ``attnmel serve`` process (shipped model) on loopback. Each client sends the headers of a
raw image upload announcing 19.5 MB, then 19 MB of its body, and stops (a slow or malicious
client). The table gives the server's resident memory when idle, its peak while the clients hold
their connections, and 3 s after they all disconnect, per upload budget (``--upload-budget-mb``;
100000 MB stands for "no shared budget"). Linux only (/proc).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from serve_memory import free_port, rss_mb  # noqa: E402


def start_server(port: int, budget_mb: float, checkpoint: str | None = None) -> subprocess.Popen:
    command = [sys.executable, "-m", "attnmel", "serve", "--port", str(port), "--threads", "1", "--no-access-log",
               "--max-upload-mb", "20", "--upload-budget-mb", str(budget_mb),
               *(["--checkpoint", checkpoint] if checkpoint else [])]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    deadline = time.monotonic() + 300
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the server did not start")
        time.sleep(0.5)


def stall(port: int, clients: int, sent: int, announced: int) -> list[socket.socket]:
    head = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {announced}\r\n\r\n").encode()
    block = b"\xff" * (1 << 16)
    sockets = []
    for _ in range(clients):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.settimeout(5)
        sock.sendall(head)
        try:
            for _ in range(sent // len(block)):
                sock.sendall(block)
        except (OSError, TimeoutError):
            pass  # refused mid-body (503): the server stopped reading
        sockets.append(sock)
    return sockets


def measure(budget_mb: float, clients: int, checkpoint: str | None = None) -> tuple[float, float, float]:
    port = free_port()
    server = start_server(port, budget_mb, checkpoint)
    try:
        time.sleep(1.0)
        idle = rss_mb(server.pid)
        sockets = stall(port, clients, 19_000_000, 19_500_000)
        time.sleep(2.0)
        peak = rss_mb(server.pid, "VmHWM")
        for sock in sockets:
            sock.close()
        time.sleep(3.0)
        after = rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=60)
    return idle, peak, after


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--budgets", type=float, nargs="+", default=[128.0, 100000.0])
    parser.add_argument("--checkpoint", help="model to serve (default: the shipped model)")
    args = parser.parse_args(argv)
    print(f"{args.clients} clients, each 19 MB into a 19.5 MB upload, then stalled\n")
    print("| upload budget MB | idle RSS MiB | peak RSS MiB | 3 s after disconnect MiB |")
    print("|---:|---:|---:|---:|")
    for budget in args.budgets:
        idle, peak, after = measure(budget, args.clients, args.checkpoint)
        print(f"| {budget:g} | {idle:.0f} | {peak:.0f} | {after:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
