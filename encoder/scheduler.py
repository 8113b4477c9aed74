"""The encoder's scheduler: one queue, windows sorted by length, runs packed by padded tokens.

Token batches queue while a window runs. When the ONNX thread is free, the scheduler takes
what is queued (up to ``sort_window_tokens``, skipping work whose caller gave up), groups it
by task, sorts it by length and executes runs of at most ``max_batch_tokens`` padded tokens:
alone on the full session, or several at once on lanes. As in TEI's queue task, batches grow
with load and a lone query runs at once. Why, with figures: docs/decisions/scheduler.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from encoder.batching import TokenBatch
from encoder.errors import EmbeddingError, ErrorKind
from encoder.model.card import ModelCard
from encoder.model.files import resolve_model
from encoder.model.runtime import OnnxModel, open_sessions
from encoder.run_planning import plan_even_runs
from encoder.settings import BatchingSettings, ServiceSettings

logger = logging.getLogger(__name__)

Result = np.ndarray | EmbeddingError
# Two ORT threads run a run only ~1.5x as fast as one (docs/decisions/scheduler.md), so a
# run takes the full session only when it outweighs its window's other runs this many times.
_FULL_SESSION_RATIO = 2
# Told (sequences, padded tokens, seconds) of every ONNX run, and each batch's queue wait.
RunObserver = Callable[[int, int, float], None]
WaitObserver = Callable[[float], None]


class Scheduler:
    """Pooled vectors (raw, not normalised) for token batches, batched across callers.

    model: the session a lone run (or a window's only run) uses, on all threads.
    lanes: an optional second session with fewer threads for ``parallel_runs`` runs at once.
    """

    def __init__(self, model: OnnxModel, card: ModelCard, batching: BatchingSettings,
                 lanes: OnnxModel | None = None, on_run: RunObserver | None = None,
                 on_wait: WaitObserver | None = None) -> None:
        self.model = model
        self.card = card
        self.batching = batching
        self.lanes = lanes
        self._lane_count = batching.parallel_runs if lanes is not None else 1
        self._on_run = on_run
        self._on_wait = on_wait
        # The ONNX thread runs one window at a time, so the event loop keeps queueing.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="onnx")
        self._lane_pool = (ThreadPoolExecutor(self._lane_count, thread_name_prefix="onnx-lane")
                           if lanes is not None else None)
        self._queue: deque[_Waiting] = deque()
        # Bulk work (the Batch API): taken only when no request waits, a run at a time.
        self._background: deque[_Waiting] = deque()
        self._running: list[_Waiting] = []
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        # Sessions whose latest run failed: the health check runs its canary on these only.
        self._failed: set[OnnxModel] = set()
        if lanes is not None:
            lanes.canary(card.pad_token_id)
        self.width = int(model.canary(card.pad_token_id).shape[-1])
        if card.hidden_size is not None and card.hidden_size != self.width:
            raise ValueError(f"model outputs width {self.width} but config.json says "
                             f"{card.hidden_size}")

    @classmethod
    def load(cls, settings: ServiceSettings, threads: int, on_run: RunObserver | None = None,
             on_wait: WaitObserver | None = None) -> Scheduler:
        """Resolve the model ``settings`` names and open its sessions on ``threads``."""
        files = resolve_model(settings.model, settings.onnx_file, settings.revision)
        card = ModelCard.from_folder(files.root)
        model, lanes = open_sessions(files, card, settings, threads)
        return cls(model, card, settings.batching, lanes, on_run, on_wait)

    def enqueue(self, batches: Sequence[TokenBatch],
                background: bool = False) -> list[asyncio.Future]:
        """Queue ``batches``; each future gets its vectors or an ``EmbeddingError``.

        Cancelling a future (its caller gave up) drops that batch's work if it has not
        started, and skips its runs that have not. ``background`` work yields to the rest:
        it runs only while nothing else waits, in windows of one run's budget, so a request
        arriving meanwhile waits at most one such run.
        """
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.get_loop() is not loop:
            # The first call, or a new event loop (a test client's, a bulk job's batch).
            self._wake = asyncio.Event()
            self._worker = loop.create_task(self._work())
        now = time.perf_counter()
        futures = [loop.create_future() for _ in batches]
        queue = self._background if background else self._queue
        queue.extend(_Waiting(b, f, now) for b, f in zip(batches, futures, strict=True))
        self._wake.set()
        return futures

    async def embed(self, batches: Sequence[TokenBatch],
                    background: bool = False) -> list[Result]:
        """``enqueue`` and wait: the results in order."""
        return list(await asyncio.gather(*self.enqueue(batches, background)))

    def held(self) -> int:
        """Token batches queued or running whose callers still wait: this replica's load."""
        return sum(not w.future.done() for w in (*self._queue, *self._background, *self._running))

    def _take_window(self) -> list[_Waiting]:
        window = self._take(self._queue, self.batching.sort_window_tokens)
        return window or self._take(self._background, self.batching.max_batch_tokens)

    @staticmethod
    def _take(queue: deque[_Waiting], budget: int) -> list[_Waiting]:
        taken, total = [], 0
        while queue:
            waiting = queue[0]
            if waiting.future.done():  # cancelled: nobody waits for it
                queue.popleft()
                continue
            size = min(waiting.batch.tokens, budget)
            if taken and total + size > budget:
                break
            taken.append(queue.popleft())
            total += size
        return taken

    async def _work(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            window = self._take_window()
            if not window:
                self._wake.clear()
                await self._wake.wait()
                continue
            now = time.perf_counter()
            if self._on_wait is not None:
                for waiting in window:
                    self._on_wait(now - waiting.arrived)
            futures = [w.future for w in window]
            self._running = window
            try:
                results = await loop.run_in_executor(
                    self._thread, self.run_window, [w.batch for w in window],
                    lambda b, futures=futures: futures[b].cancelled())
            except Exception as exc:  # a bug must fail this window's callers, not hang all
                logger.exception("encoder window failed")
                results = [EmbeddingError(ErrorKind.ENCODER_FAILED, f"encoder failed: {exc}")
                           ] * len(window)
            self._running = []
            for future, result in zip(futures, results, strict=True):
                if not future.done():  # a caller that gave up cancelled it
                    future.set_result(result)

    def run_window(self, batches: Sequence[TokenBatch],
                   cancelled: Callable[[int], bool] = lambda b: False) -> list[Result]:
        """Group by task, sort, pack and execute one window, on the calling thread.

        ``cancelled(b)`` says whether batch ``b``'s caller gave up: a run none of whose
        batches is still wanted is skipped when its turn comes.
        """
        results = [np.empty((b.outputs, self.width), dtype=np.float32) for b in batches]
        failures: dict[int, EmbeddingError] = {}
        by_task: dict[int | None, list[_Item]] = defaultdict(list)
        for b, batch in enumerate(batches):
            row = 0
            for k, sequence in enumerate(batch.sequences()):
                spans = None if batch.spans is None else batch.spans[k]
                by_task[batch.task_id].append(_Item(b, row, sequence, spans))
                row += 1 if spans is None else len(spans)
        runs: list[_Run] = []
        for task_id, items in by_task.items():
            lengths = np.fromiter((len(i.sequence) for i in items), dtype=np.int64)
            plan = plan_even_runs(lengths, self.batching.max_batch_tokens, self._lane_count)
            runs.extend(_Run([items[i] for i in run], task_id) for run in plan)

        def execute(run: _Run, model: OnnxModel) -> None:
            if all(cancelled(item.batch) for item in run.items):
                return
            try:
                pooled = self._execute(run, model)
                self._failed.discard(model)
            except Exception as exc:  # one bad run must not fail the other batches
                logger.exception("ONNX run failed")
                self._failed.add(model)
                for item in run.items:
                    failures[item.batch] = EmbeddingError(ErrorKind.ENCODER_FAILED,
                                                          f"encoder run failed: {exc}")
                return
            for item, vectors in zip(run.items, pooled, strict=True):
                results[item.batch][item.row : item.row + len(vectors)] = vectors

        if self._lane_pool is None:
            for run in runs:
                execute(run, self.model)
        else:
            self._in_lanes(runs, execute)
        return [failures.get(b, result) for b, result in enumerate(results)]

    def _in_lanes(self, runs: list[_Run], execute: Callable) -> None:
        # Biggest first, so lanes finish together. A run left alone, or one outweighing the
        # rest (a long document among queries), runs on the full session instead.
        assert self._lane_pool is not None
        runs = sorted(runs, key=_Run.padded_tokens, reverse=True)
        while runs and (len(runs) == 1 or runs[0].padded_tokens() * (self._lane_count - 1)
                        > _FULL_SESSION_RATIO * sum(run.padded_tokens() for run in runs[1:])):
            execute(runs.pop(0), self.model)
        for future in [self._lane_pool.submit(execute, run, self.lanes) for run in runs]:
            future.result()

    def _execute(self, run: _Run, model: OnnxModel) -> list[np.ndarray]:
        pooled, padded, seconds = model.embed_run([i.sequence for i in run.items],
                                                  [i.spans for i in run.items], run.task_id,
                                                  self.card.pad_token_id, self.card.pooling)
        if self._on_run is not None:
            self._on_run(len(run.items), padded, seconds)
        return pooled

    def check(self) -> None:
        """Raise if a session whose latest run failed fails a tiny run too.

        Passive while runs succeed: a canary through a big session would stall the queries
        behind it. A failed run may be its input's fault (the canary passes) or the session's.
        """
        for model in list(self._failed):
            if not np.isfinite(model.canary(self.card.pad_token_id)).all():
                raise RuntimeError("the ONNX session returned non-finite values")
            self._failed.discard(model)

    async def check_async(self) -> None:
        """``check`` on the ONNX thread, behind the window running now."""
        await asyncio.get_running_loop().run_in_executor(self._thread, self.check)


@dataclass(frozen=True)
class _Waiting:
    """A queued token batch, its caller's future and when it arrived."""

    batch: TokenBatch
    future: asyncio.Future
    arrived: float


@dataclass(frozen=True)
class _Item:
    """One sequence on its way through a run, and where its vectors go."""

    batch: int
    row: int
    sequence: np.ndarray
    spans: np.ndarray | None


@dataclass(frozen=True)
class _Run:
    """One ONNX run: sequences of one task."""

    items: list[_Item]
    task_id: int | None

    def padded_tokens(self) -> int:
        return len(self.items) * max(len(item.sequence) for item in self.items)
