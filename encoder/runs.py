"""One window's ONNX work: token batches grouped by task, packed into runs, run on sessions.

The scheduler (``scheduler.py``) decides what runs when; this module turns a window of token
batches into pooled vectors, on the calling thread.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from encoder.batching import TokenBatch
from encoder.errors import EmbeddingError, ErrorKind
from encoder.model.card import ModelCard
from encoder.model.runtime import OnnxModel
from encoder.run_planning import plan_even_runs
from encoder.settings import BatchingSettings

logger = logging.getLogger(__name__)

Result = np.ndarray | EmbeddingError
# Two ORT threads run a run only ~1.5x as fast as one (docs/decisions/scheduler.md), so a
# run takes the full session only when it outweighs its window's other runs this many times.
_FULL_SESSION_RATIO = 2
# Told (sequences, padded tokens, seconds) of every ONNX run.
RunObserver = Callable[[int, int, float], None]


class WindowRunner:
    """Pooled vectors (raw, not normalised) for a window of token batches.

    model: the session a lone run (or a window's only run) uses, on all threads.
    lanes: an optional second session with fewer threads for ``parallel_runs`` runs at once.
    """

    def __init__(self, model: OnnxModel, card: ModelCard, batching: BatchingSettings,
                 lanes: OnnxModel | None = None, on_run: RunObserver | None = None) -> None:
        self.model = model
        self.card = card
        self.batching = batching
        self.lanes = lanes
        self.lane_count = batching.parallel_runs if lanes is not None else 1
        self._on_run = on_run
        self._lane_pool = (ThreadPoolExecutor(self.lane_count, thread_name_prefix="onnx-lane")
                           if lanes is not None else None)
        # Sessions whose latest run failed: the health check runs its canary on these only.
        self.failed: set[OnnxModel] = set()
        if lanes is not None:
            lanes.canary(card.pad_token_id)
        self.width = int(model.canary(card.pad_token_id).shape[-1])
        if card.hidden_size is not None and card.hidden_size != self.width:
            raise ValueError(f"model outputs width {self.width} but config.json says "
                             f"{card.hidden_size}")

    def run_window(self, batches: Sequence[TokenBatch],
                   cancelled: Callable[[int], bool] = lambda b: False,
                   session: OnnxModel | None = None, options=None) -> list[Result]:
        """Group by task, sort, pack and execute one window, on the calling thread.

        ``cancelled(b)`` says whether batch ``b``'s caller gave up: a run none of whose
        batches is still wanted is skipped when its turn comes. ``session``: run everything
        on it, one run at a time (None: lanes and the full session as the runs suit).
        ``options``: ORT ``RunOptions`` for every run; a run ended by their ``terminate``
        reports nothing (its callers are gone).
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
        lanes = 1 if session is not None else self.lane_count
        runs: list[_Run] = []
        for task_id, items in by_task.items():
            lengths = np.fromiter((len(i.sequence) for i in items), dtype=np.int64)
            plan = plan_even_runs(lengths, self.batching.max_batch_tokens, lanes)
            runs.extend(_Run([items[i] for i in run], task_id) for run in plan)

        def execute(run: _Run, model: OnnxModel) -> None:
            if all(cancelled(item.batch) for item in run.items):
                return
            try:
                pooled = self._execute(run, model, options)
                self.failed.discard(model)
            except Exception as exc:  # one bad run must not fail the other batches
                if options is not None and options.terminate:
                    return
                logger.exception("ONNX run failed")
                self.failed.add(model)
                for item in run.items:
                    failures[item.batch] = EmbeddingError(ErrorKind.ENCODER_FAILED,
                                                          f"encoder run failed: {exc}")
                return
            for item, vectors in zip(run.items, pooled, strict=True):
                results[item.batch][item.row : item.row + len(vectors)] = vectors

        if session is not None or self._lane_pool is None:
            for run in runs:
                execute(run, session or self.model)
        else:
            self._in_lanes(runs, execute)
        return [failures.get(b, result) for b, result in enumerate(results)]

    def _in_lanes(self, runs: list[_Run], execute: Callable) -> None:
        # Biggest first, so lanes finish together. A run left alone, or one outweighing the
        # rest (a long document among queries), runs on the full session instead.
        assert self._lane_pool is not None
        runs = sorted(runs, key=_Run.padded_tokens, reverse=True)
        while runs and (len(runs) == 1 or runs[0].padded_tokens() * (self.lane_count - 1)
                        > _FULL_SESSION_RATIO * sum(run.padded_tokens() for run in runs[1:])):
            execute(runs.pop(0), self.model)
        for future in [self._lane_pool.submit(execute, run, self.lanes) for run in runs]:
            future.result()

    def _execute(self, run: _Run, model: OnnxModel, options) -> list[np.ndarray]:
        pooled, padded, seconds = model.embed_run([i.sequence for i in run.items],
                                                  [i.spans for i in run.items], run.task_id,
                                                  self.card.pad_token_id, self.card.pooling,
                                                  options)
        if self._on_run is not None:
            self._on_run(len(run.items), padded, seconds)
        return pooled

    def check(self) -> None:
        """Raise if a session whose latest run failed fails a tiny run too.

        Passive while runs succeed: a canary through a big session would stall the queries
        behind it. A failed run may be its input's fault (the canary passes) or the session's.
        """
        for model in list(self.failed):
            if not np.isfinite(model.canary(self.card.pad_token_id)).all():
                raise RuntimeError("the ONNX session returned non-finite values")
            self.failed.discard(model)


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
