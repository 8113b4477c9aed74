"""Continuous batching: merge whatever is queued while the previous run is still going.

Ray's ``@serve.batch`` forms a batch as soon as its wait window closes, even while earlier
batches still queue for their turn, so under load it runs many small batches back to back
(measured: served throughput of one-text requests stayed at the one-text-per-run rate). A
``Coalescer`` instead lets work pile up while ``concurrency`` runs are in flight and starts
the next run with everything queued, up to the token budget, as TEI's scheduler does.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from encoder.batching import TokenBatch

Run = Callable[[list[TokenBatch]], Awaitable[Sequence[Any]]]


class Coalescer:
    """Queue token batches; ``concurrency`` workers each run the queue head, merged.

    run: turns a list of token batches into one result per batch (same order).
    max_tokens: a run takes queued batches while their ``size`` sums stay within this
      (always at least one).
    concurrency: runs in flight at once (1 for one ONNX session; more to feed several
      encoder replicas from one ingress).
    """

    def __init__(self, run: Run, max_tokens: int, concurrency: int = 1) -> None:
        self._run = run
        self.max_tokens = max_tokens
        self.concurrency = concurrency
        self._queue: deque[tuple[TokenBatch, asyncio.Future]] = deque()
        self._ready: asyncio.Event | None = None
        self._workers: list[asyncio.Task] = []

    async def submit(self, batches: Sequence[TokenBatch]) -> list[Any]:
        """Results for ``batches``, in order; a failed run raises here for its batches."""
        loop = asyncio.get_running_loop()
        if not self._workers:
            self._ready = asyncio.Event()
            self._workers = [loop.create_task(self._work()) for _ in range(self.concurrency)]
        futures = [loop.create_future() for _ in batches]
        self._queue.extend(zip(batches, futures, strict=True))
        self._ready.set()
        return list(await asyncio.gather(*futures))

    def _take(self) -> list[tuple[TokenBatch, asyncio.Future]]:
        taken, total = [], 0
        while self._queue:
            batch, future = self._queue[0]
            if future.done():  # its caller gave up (timeout, disconnect): skip the work
                self._queue.popleft()
                continue
            if taken and total + batch.size > self.max_tokens:
                break
            taken.append(self._queue.popleft())
            total += batch.size
        return taken

    async def _work(self) -> None:
        assert self._ready is not None
        while True:
            taken = self._take()
            if not taken:
                self._ready.clear()
                await self._ready.wait()
                continue
            try:
                results = await self._run([batch for batch, _ in taken])
            except Exception as exc:
                for _, future in taken:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(taken, results, strict=True):
                if not future.done():
                    future.set_result(result)
