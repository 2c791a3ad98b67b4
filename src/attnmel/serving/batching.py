"""Grouping concurrent requests into one forward pass.

On a CPU, one forward pass over N images costs less than N passes over one image, and a single
inference thread avoids oversubscribing the cores with one torch thread pool per request. The
batcher is greedy: a batch is whatever is queued when the model becomes free (up to
``max_batch``), plus whatever arrives within ``max_wait_ms``; an idle server adds no latency
with the default wait of 0. ``benchmarks/serve_load.py`` measures it against ``DirectInference``.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import torch
from starlette.concurrency import run_in_threadpool

#: model function: a batch (N, 3, H, W) -> one result per image
BatchFunction = Callable[[torch.Tensor], list[Any]]


class DirectInference:
    """One forward pass per request, in the thread pool (no batching)."""

    def __init__(self, fn: BatchFunction):
        self.fn = fn

    async def __call__(self, image: torch.Tensor) -> Any:
        return (await run_in_threadpool(self.fn, image[None]))[0]

    def close(self) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return {"batching": False}


class MicroBatcher:
    """A daemon thread that runs ``fn`` on batches of queued images."""

    def __init__(self, fn: BatchFunction, max_batch: int = 16, max_wait_ms: float = 0.0):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.fn = fn
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.batches = 0
        self.images = 0
        self._queue: queue.Queue[tuple[torch.Tensor, Future] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="attnmel-batcher", daemon=True)
        self._thread.start()

    def submit(self, image: torch.Tensor) -> Future:
        future: Future = Future()
        self._queue.put((image, future))
        return future

    async def __call__(self, image: torch.Tensor) -> Any:
        return await asyncio.wrap_future(self.submit(image))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def describe(self) -> dict[str, Any]:
        mean = self.images / self.batches if self.batches else None
        return {"batching": True, "max_batch": self.max_batch, "max_wait_ms": self.max_wait * 1000,
                "batches": self.batches, "mean_batch_size": mean}

    def _collect(self, first: tuple[torch.Tensor, Future]) -> tuple[list[tuple[torch.Tensor, Future]], bool]:
        items, stop = [first], False
        deadline = time.monotonic() + self.max_wait
        while len(items) < self.max_batch:
            try:
                remaining = deadline - time.monotonic()
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                stop = True
                break
            items.append(item)
        return items, stop

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            items, stop = self._collect(first)
            items = [(image, future) for image, future in items if future.set_running_or_notify_cancel()]
            if items:
                try:
                    results = self.fn(torch.stack([image for image, _ in items]))
                except Exception as exc:  # noqa: BLE001 - hand the failure to every waiting request
                    for _, future in items:
                        future.set_exception(exc)
                else:
                    for (_, future), result in zip(items, results, strict=True):
                        future.set_result(result)
                    self.batches += 1
                    self.images += len(items)
            if stop:
                return
