"""The encoder's scheduler: one queue, windows sorted by length, runs packed by padded tokens,
and a long queue for long inputs.

Parcels queue while a window runs. When the ONNX thread is free, the scheduler takes what is
queued (up to ``sort_window_tokens``, skipping work whose caller gave up) and hands it to
``RunExecutor`` (``runs.py``), which groups it by task, sorts it by length and executes runs
of at most ``max_run_tokens`` padded tokens. As in TEI's queue task, runs grow with load and
a lone query runs at once. Why, with figures: docs/decisions/scheduler.md.

A parcel holding an input longer than ``max_run_tokens`` (a document: seconds to minutes of
work) goes to the long queue instead: one at a time, on the full session, while short work
goes on beside it one run at a time on the parallel session. A long input is admitted only
if its run fits the replica's memory (``memory.MemoryBudget``), and its run is ended as soon
as its caller gives up. Why, with figures: docs/decisions/long-documents.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from encoder.errors import EmbeddingError, ErrorKind
from encoder.model.card import ModelCard
from encoder.model.files import resolve_model
from encoder.model.runtime import OnnxModel, long_run_options
from encoder.parcels import Parcel
from encoder.scheduling.memory import MemoryBudget, activation_bytes, memory_limit, resident_bytes
from encoder.scheduling.runs import Result, RunExecutor, RunObserver, open_sessions
from encoder.settings import SchedulerSettings, ServiceSettings

logger = logging.getLogger(__name__)

__all__ = ["Result", "Scheduler"]

# Told how long each parcel waited for its run.
WaitObserver = Callable[[float], None]


class Scheduler:
    """Pooled vectors (raw, not normalised) for parcels, run together across callers.

    model: the full session (all threads): lone runs, and long inputs.
    parallel: the parallel session, for ``parallel_runs`` runs at once (None: none).
    memory: bytes the replica may use (None: the machine's); long inputs must fit in it.
    """

    def __init__(self, model: OnnxModel, card: ModelCard, settings: SchedulerSettings,
                 parallel: OnnxModel | None = None, on_run: RunObserver | None = None,
                 on_wait: WaitObserver | None = None, memory: float | None = None) -> None:
        self.model = model
        self.card = card
        self.settings = settings
        self.parallel = parallel
        self.executor = RunExecutor(model, card, settings, parallel, on_run)
        self.width = self.executor.width
        self._on_wait = on_wait
        # The ONNX thread runs one window at a time, so the event loop keeps queueing.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="onnx")
        self._long_thread = ThreadPoolExecutor(1, thread_name_prefix="onnx-long")
        self._queue: deque[_Waiting] = deque()
        self._long: deque[_Waiting] = deque()
        # Background work (the Batch API): taken only when no request waits, a run at a time.
        self._background: deque[_Waiting] = deque()
        self._long_background: deque[_Waiting] = deque()
        self._running: list[_Waiting] = []
        self._long_running: _Waiting | None = None
        self._wake: asyncio.Event | None = None
        self._wake_long: asyncio.Event | None = None
        self._workers: list[asyncio.Task] = []
        # Beside a long run, short work takes one run at a time: room for one such run.
        short_run = activation_bytes(card, 1, settings.max_run_tokens, flash=False)
        self.memory = MemoryBudget(card, memory_limit(memory), resident_bytes(), short_run,
                                   model.flash)
        logger.info("memory: %.2f GB for this replica, %.2f GB held after loading; inputs of "
                    "up to %d tokens fit", self.memory.limit / 1e9, self.memory.held / 1e9,
                    self.memory.longest(card.max_tokens))

    @classmethod
    def load(cls, settings: ServiceSettings, threads: int, on_run: RunObserver | None = None,
             on_wait: WaitObserver | None = None, memory: float | None = None) -> Scheduler:
        """Resolve the model ``settings`` names and open its sessions on ``threads``."""
        files = resolve_model(settings.model, settings.onnx_file, settings.revision)
        card = ModelCard.from_folder(files.root)
        model, parallel = open_sessions(files, card, threads, settings.scheduler.parallel_runs,
                                        settings.quantize == "int8")
        return cls(model, card, settings.scheduler, parallel, on_run, on_wait, memory)

    def run_window(self, parcels: Sequence[Parcel],
                   cancelled: Callable[[int], bool] = lambda p: False,
                   session: OnnxModel | None = None, options=None) -> list[Result]:
        """One window's runs, on the calling thread: ``RunExecutor.run_window``."""
        return self.executor.run_window(parcels, cancelled, session, options)

    def enqueue(self, parcels: Sequence[Parcel],
                background: bool = False) -> list[asyncio.Future]:
        """Queue ``parcels``; each future gets its vectors or an ``EmbeddingError``.

        Cancelling a future (its caller gave up) drops that parcel's work if it has not
        started, skips its runs that have not, and ends a long input's run. ``background``
        work yields to the rest: it runs only while nothing else waits, in windows of one
        run's budget, so a request arriving meanwhile waits at most one such run.
        """
        loop = asyncio.get_running_loop()
        if not self._workers or self._workers[0].get_loop() is not loop:
            # The first call, or a new event loop (a test client's, a bulk job's rows).
            self._wake, self._wake_long = asyncio.Event(), asyncio.Event()
            self._workers = [loop.create_task(self._work()), loop.create_task(self._work_long())]
        now = time.perf_counter()
        futures = []
        for parcel in parcels:
            future = loop.create_future()
            futures.append(future)
            longest = parcel.longest
            if longest <= self.settings.max_run_tokens:
                queue = self._background if background else self._queue
            elif not self.memory.fits(longest):
                future.set_result(self.memory.refusal(longest, self.card.max_tokens))
                continue
            else:
                queue = self._long_background if background else self._long
            queue.append(_Waiting(parcel, future, now))
        self._wake.set()
        self._wake_long.set()
        return futures

    async def embed(self, parcels: Sequence[Parcel],
                    background: bool = False) -> list[Result]:
        """``enqueue`` and wait: the results in order."""
        return list(await asyncio.gather(*self.enqueue(parcels, background)))

    def held(self) -> int:
        """Parcels queued or running whose callers still wait: this replica's load."""
        waiting = (*self._queue, *self._background, *self._running, *self._long,
                   *self._long_background, *([self._long_running] if self._long_running else []))
        return sum(not w.future.done() for w in waiting)

    def _take_window(self) -> list[_Waiting]:
        window = self._take(self._queue, self.settings.sort_window_tokens)
        return window or self._take(self._background, self.settings.max_run_tokens)

    @staticmethod
    def _take(queue: deque[_Waiting], budget: int) -> list[_Waiting]:
        taken, total = [], 0
        while queue:
            waiting = queue[0]
            if waiting.future.done():  # cancelled: nobody waits for it
                queue.popleft()
                continue
            size = min(waiting.parcel.tokens, budget)
            if taken and total + size > budget:
                break
            taken.append(queue.popleft())
            total += size
        return taken

    async def _work(self) -> None:
        assert self._wake is not None
        while True:
            window = self._take_window()
            if not window:
                self._wake.clear()
                await self._wake.wait()
                continue
            # Beside a long run, short work takes one run at a time on the parallel session
            # (the full one is busy), so a query waits for a query's run, not the document.
            session = (self.parallel or self.model) if self._long_running else None
            self._running = window
            await self._run(self._thread, window, session)
            self._running = []

    async def _work_long(self) -> None:
        assert self._wake_long is not None
        while True:
            taken = self._take(self._long, 1) or self._take(self._long_background, 1)
            if not taken:
                self._wake_long.clear()
                await self._wake_long.wait()
                continue
            options = long_run_options()
            # The caller gave up (its future is cancelled): end the run between two nodes.
            taken[0].future.add_done_callback(
                lambda future, options=options: future.cancelled() and setattr(
                    options, "terminate", True))
            self._long_running = taken[0]
            try:
                await self._run(self._long_thread, taken, self.model, options)
            finally:
                self._long_running = None

    async def _run(self, thread: ThreadPoolExecutor, window: list[_Waiting],
                   session: OnnxModel | None, options=None) -> None:
        """Run ``window`` on ``thread`` and give each caller its result."""
        now = time.perf_counter()
        if self._on_wait is not None:
            for waiting in window:
                self._on_wait(now - waiting.arrived)
        futures = [w.future for w in window]
        try:
            results = await asyncio.get_running_loop().run_in_executor(
                thread, self.run_window, [w.parcel for w in window],
                lambda b: futures[b].cancelled(), session, options)
        except Exception as exc:  # a bug must fail this window's callers, not hang all
            logger.exception("encoder window failed")
            results = [EmbeddingError(ErrorKind.ENCODER_FAILED, f"encoder failed: {exc}")
                       ] * len(window)
        for future, result in zip(futures, results, strict=True):
            if not future.done():  # a caller that gave up cancelled it
                future.set_result(result)

    def check(self) -> None:
        """``RunExecutor.check``: raise if a session whose latest run failed fails again."""
        self.executor.check()

    async def check_async(self) -> None:
        """``check`` on the ONNX thread, behind the window running now."""
        await asyncio.get_running_loop().run_in_executor(self._thread, self.check)


@dataclass(frozen=True)
class _Waiting:
    """A queued parcel, its caller's future and when it arrived."""

    parcel: Parcel
    future: asyncio.Future
    arrived: float
