"""One window's ONNX work: parcels grouped by task, packed into runs, run on the sessions.

The scheduler (``scheduler.py``) decides what runs when; ``RunExecutor`` turns a window of
parcels into pooled vectors, on the calling thread. A replica has a full session (all ORT
threads) and, with ``parallel_runs`` > 1, a parallel session on which that many runs
execute at once, each on a share of the threads.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from encoder.errors import EmbeddingError, ErrorKind
from encoder.model.card import ModelCard
from encoder.model.files import ModelFiles
from encoder.model.runtime import OnnxModel, served_onnx
from encoder.parcels import Parcel
from encoder.scheduling.planning import plan_even_runs
from encoder.settings import SchedulerSettings

logger = logging.getLogger(__name__)

Result = np.ndarray | EmbeddingError
# Two ORT threads run a run only ~1.5x as fast as one (docs/decisions/scheduler.md), so a
# run takes the full session only when it outweighs its window's other runs this many times.
_FULL_SESSION_RATIO = 2
# Told (sequences, padded tokens, seconds) of every ONNX run.
RunObserver = Callable[[int, int, float], None]


def open_sessions(files: ModelFiles, card: ModelCard, threads: int, parallel_runs: int,
                  int8: bool) -> tuple[OnnxModel, OnnxModel | None]:
    """The full session on ``threads`` ORT threads, and the parallel session of
    ``threads // parallel_runs`` threads when more than one run fits (else None), both on
    the file the model serves (``served_onnx``: prepared, int8 if asked)."""
    assert files.onnx is not None
    onnx = served_onnx(files.onnx, card, int8)
    runs = min(parallel_runs, threads)
    logger.info("loading %s with %d ORT thread(s)%s", onnx, threads,
                f", {runs} parallel runs" if runs > 1 else "")
    parallel = OnnxModel(onnx, threads // runs) if runs > 1 else None
    return OnnxModel(onnx, threads), parallel


class RunExecutor:
    """Pooled vectors (raw, not normalised) for a window of parcels.

    model: the full session: a lone run (or one outweighing the rest) uses all threads.
    parallel: the parallel session, for ``parallel_runs`` runs at once (None: none).
    """

    def __init__(self, model: OnnxModel, card: ModelCard, settings: SchedulerSettings,
                 parallel: OnnxModel | None = None, on_run: RunObserver | None = None) -> None:
        self.model = model
        self.card = card
        self.settings = settings
        self.parallel = parallel
        self.parallel_runs = settings.parallel_runs if parallel is not None else 1
        self._on_run = on_run
        self._pool = (ThreadPoolExecutor(self.parallel_runs, thread_name_prefix="onnx-parallel")
                      if parallel is not None else None)
        # Sessions whose latest run failed: the health check runs its canary on these only.
        self.failed: set[OnnxModel] = set()
        if parallel is not None:
            parallel.canary(card.pad_token_id)
        self.width = int(model.canary(card.pad_token_id).shape[-1])
        if card.kind == "embeddings" and card.hidden_size not in (None, self.width):
            raise ValueError(f"model outputs width {self.width} but config.json says "
                             f"{card.hidden_size}")

    def run_window(self, parcels: Sequence[Parcel],
                   cancelled: Callable[[int], bool] = lambda p: False,
                   session: OnnxModel | None = None, options=None) -> list[Result]:
        """Group by task, sort, pack and execute one window, on the calling thread.

        ``cancelled(p)`` says whether parcel ``p``'s caller gave up: a run none of whose
        parcels is still wanted is skipped when its turn comes. ``session``: run everything
        on it, one run at a time (None: the parallel and full sessions as the runs suit).
        ``options``: ORT ``RunOptions`` for every run; a run ended by their ``terminate``
        reports nothing (its callers are gone).
        """
        results = [np.empty((p.outputs, self.width), dtype=np.float32) for p in parcels]
        failures: dict[int, EmbeddingError] = {}
        runs = self._plan(parcels, 1 if session is not None else self.parallel_runs)

        def execute(run: _Run, model: OnnxModel) -> None:
            if all(cancelled(item.parcel) for item in run.items):
                return
            try:
                pooled = self._execute(run, model, options)
                self.failed.discard(model)
            except Exception as exc:  # one bad run must not fail the other parcels
                if options is not None and options.terminate:
                    return
                logger.exception("ONNX run failed")
                self.failed.add(model)
                for item in run.items:
                    failures[item.parcel] = EmbeddingError(ErrorKind.ENCODER_FAILED,
                                                           f"encoder run failed: {exc}")
                return
            for item, vectors in zip(run.items, pooled, strict=True):
                results[item.parcel][item.row : item.row + len(vectors)] = vectors

        if session is not None or self._pool is None:
            for run in runs:
                execute(run, session or self.model)
        else:
            self._in_parallel(runs, execute)
        return [failures.get(p, result) for p, result in enumerate(results)]

    def _plan(self, parcels: Sequence[Parcel], parts: int) -> list[_Run]:
        """The window's runs: its sequences grouped by task, each group packed by padded
        tokens into a multiple of ``parts`` runs."""
        by_task: dict[int | None, list[_Item]] = defaultdict(list)
        for p, parcel in enumerate(parcels):
            row = 0
            for k, sequence in enumerate(parcel.sequences()):
                spans = None if parcel.spans is None else parcel.spans[k]
                pair = None if parcel.pair_starts is None else int(parcel.pair_starts[k])
                by_task[parcel.task_id].append(_Item(p, row, sequence, spans, pair))
                row += 1 if spans is None else len(spans)
        runs: list[_Run] = []
        for task_id, items in by_task.items():
            lengths = np.fromiter((len(i.sequence) for i in items), dtype=np.int64)
            plan = plan_even_runs(lengths, self.settings.max_run_tokens, parts)
            runs.extend(_Run([items[i] for i in run], task_id) for run in plan)
        return runs

    def _in_parallel(self, runs: list[_Run], execute: Callable) -> None:
        # Biggest first, so the parallel runs finish together. A run left alone, or one
        # outweighing the rest (a long document among queries), takes the full session.
        assert self._pool is not None
        runs = sorted(runs, key=_Run.padded_tokens, reverse=True)
        while runs and (len(runs) == 1 or runs[0].padded_tokens() * (self.parallel_runs - 1)
                        > _FULL_SESSION_RATIO * sum(run.padded_tokens() for run in runs[1:])):
            execute(runs.pop(0), self.model)
        for future in [self._pool.submit(execute, run, self.parallel) for run in runs]:
            future.result()

    def _execute(self, run: _Run, model: OnnxModel, options) -> list[np.ndarray]:
        items = run.items
        pairs = [i.pair_start for i in items] if any(
            i.pair_start is not None for i in items) else None
        pooled, padded, seconds = model.embed_run([i.sequence for i in items],
                                                  [i.spans for i in items], run.task_id,
                                                  self.card.pad_token_id, self.card.pooling,
                                                  options, pairs)
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

    parcel: int
    row: int
    sequence: np.ndarray
    spans: np.ndarray | None
    pair_start: int | None = None  # a rerank pair's second segment


@dataclass(frozen=True)
class _Run:
    """One ONNX run: sequences of one task."""

    items: list[_Item]
    task_id: int | None

    def padded_tokens(self) -> int:
        return len(self.items) * max(len(item.sequence) for item in self.items)
