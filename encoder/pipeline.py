"""The encoder's core: token batches in, pooled float32 vectors out, one ONNX run at a time."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from encoder.batching import TokenBatch, pad, plan_even_runs
from encoder.errors import EncoderFailure
from encoder.model_card import ModelCard
from encoder.model_files import resolve_model
from encoder.pooling import POOLERS, span_means
from encoder.quantize import quantized_model
from encoder.runtime import OnnxModel
from encoder.settings import ServiceSettings

logger = logging.getLogger(__name__)


class EmbeddingPipeline:
    """Group items by task, sort by length, pack runs by padded tokens, run, pool.

    Returns raw pooled vectors (not normalised): what a client asked for (dimensions,
    normalisation, encoding) is applied by the ingress, so one batch never mixes options.

    With ``lanes`` (a second session of the same model, fewer threads each) and more than
    one run to do, ``lane_count`` runs go at once, one per lane thread, instead of one run
    at a time on all of ``model``'s threads: a run that is alone (a lone query) still gets
    them all. Parallel runs share no barrier, so a core taken away for a moment (by Ray's
    own processes, say) stalls one run instead of every thread of the one run.
    """

    def __init__(self, model: OnnxModel, card: ModelCard, max_batch_tokens: int,
                 lanes: OnnxModel | None = None, lane_count: int = 1) -> None:
        self.model = model
        self.card = card
        self.max_batch_tokens = max_batch_tokens
        self.lanes = lanes if lane_count > 1 else None
        self._lane_count = lane_count if self.lanes is not None else 1
        # Its workers take submitted runs in order, each the next one when it is free.
        self._lane_pool = (ThreadPoolExecutor(lane_count, thread_name_prefix="onnx-lane")
                           if self.lanes is not None else None)
        # Sessions whose latest run failed: the health check runs its canary on these only.
        self._failed: set[OnnxModel] = set()
        # Told (sequences, padded tokens, seconds) of every ONNX run: the replica's metrics.
        self.on_run: Callable[[int, int, float], None] | None = None
        self._pool = POOLERS[card.pooling]
        self.width = self._warm_up()
        if card.hidden_size is not None and card.hidden_size != self.width:
            raise ValueError(
                f"model outputs width {self.width} but config.json says {card.hidden_size}"
            )

    @classmethod
    def load(cls, settings: ServiceSettings, threads: int) -> EmbeddingPipeline:
        """Resolve the model named by ``settings`` and open its ONNX session."""
        files = resolve_model(settings.model, settings.onnx_file, settings.revision)
        card = ModelCard.from_folder(files.root)
        onnx = quantized_model(files.onnx) if settings.quantize == "int8" else files.onnx
        logger.info("loading %s with %d ORT thread(s)", onnx, threads)
        lane_count = min(settings.parallel_runs, threads)
        lanes = None
        if lane_count > 1:
            logger.info("parallel runs: %d at once, %d ORT thread(s) each",
                        lane_count, threads // lane_count)
            lanes = OnnxModel(onnx, threads // lane_count, settings.realtime_runs)
        model = OnnxModel(onnx, threads, settings.realtime_runs)
        return cls(model, card, settings.max_batch_tokens, lanes, lane_count)

    def _warm_up(self) -> int:
        # The first ORT run allocates and plans; do it before traffic, and learn the width.
        if self.lanes is not None:
            self._canary(self.lanes)
        return int(self._canary(self.model).shape[-1])

    def check(self) -> None:
        """Raise if a session whose latest run failed fails a tiny run too.

        Passive while runs succeed: a canary through a jina-v3-sized session streams all
        its weights (~0.1 s of a core per session) and, run every few seconds, stalled lone
        queries queued behind it. A failed run may be its input's fault (the canary then
        passes and clears it) or the session's (the canary fails: the replica is replaced).
        """
        for model in list(self._failed):
            if not np.isfinite(self._canary(model)).all():
                raise RuntimeError("the ONNX session returned non-finite values")
            self._failed.discard(model)

    def _canary(self, model: OnnxModel) -> np.ndarray:
        ids = np.full((1, 4), self.card.pad_token_id, dtype=np.int64)
        task = 0 if model.has_task_id else None
        return model.token_states(ids, np.ones_like(ids), task)

    def embed(self, batches: Sequence[TokenBatch]) -> list[np.ndarray | EncoderFailure]:
        """Pooled vectors for each batch, in input order; a failed run fails only its batches."""
        results = [np.empty((b.outputs, self.width), dtype=np.float32) for b in batches]
        failures: dict[int, EncoderFailure] = {}
        by_task: dict[int | None, list[_Item]] = defaultdict(list)
        for b, batch in enumerate(batches):
            row = 0
            for k, sequence in enumerate(batch.sequences()):
                spans = None if batch.spans is None else batch.spans[k]
                by_task[batch.task_id].append(_Item(b, row, sequence, spans))
                row += 1 if spans is None else len(spans)
        runs: list[tuple[list[_Item], int | None]] = []
        for task_id, items in by_task.items():
            lengths = np.fromiter((len(i.sequence) for i in items), dtype=np.int64)
            runs.extend(([items[i] for i in run], task_id) for run in
                        plan_even_runs(lengths, self.max_batch_tokens, self._lane_count))

        def execute(members: list[_Item], task_id: int | None, model: OnnxModel) -> None:
            try:
                pooled = self._run(members, task_id, model)
                self._failed.discard(model)
            except Exception as exc:  # one bad run must not fail the other batches
                logger.exception("ONNX run failed")
                self._failed.add(model)
                for member in members:
                    failures[member.batch] = EncoderFailure(f"encoder run failed: {exc}")
                return
            for member, vectors in zip(members, pooled, strict=True):
                results[member.batch][member.row : member.row + len(vectors)] = vectors

        if self._lane_pool is None:
            for members, task_id in runs:
                execute(members, task_id, self.model)
        else:
            self._in_lanes(runs, execute)
        return [failures.get(b, result) for b, result in enumerate(results)]

    def _in_lanes(self, runs: list, execute: Callable) -> None:
        # Biggest runs first, so the lanes finish close together instead of one idling while
        # the other ends a long run. A run left alone, or bigger than its lane's share of
        # the work (one long document among short queries), would hold one lane at
        # 1/lane_count of the threads while the others idle: it runs on the full session.
        assert self._lane_pool is not None
        runs = sorted(runs, key=_padded_tokens, reverse=True)
        remaining = sum(_padded_tokens(run) for run in runs)
        while runs and (len(runs) == 1
                        or _padded_tokens(runs[0]) * self._lane_count > remaining):
            remaining -= _padded_tokens(runs[0])
            execute(*runs.pop(0), self.model)
        for future in [self._lane_pool.submit(execute, *run, self.lanes) for run in runs]:
            future.result()

    def _run(self, items: list[_Item], task_id: int | None,
             model: OnnxModel) -> list[np.ndarray]:
        ids, mask = pad([i.sequence for i in items], self.card.pad_token_id)
        started = time.perf_counter()
        states = model.token_states(ids, mask, task_id)
        if self.on_run is not None:
            self.on_run(len(items), ids.size, time.perf_counter() - started)
        pooled = self._pool(states, mask)
        if not np.isfinite(pooled).all():  # spans lie inside the mask: this covers them too
            raise FloatingPointError("the ONNX session returned non-finite values")
        return [
            pooled[row : row + 1] if item.spans is None else span_means(states[row], item.spans)
            for row, item in enumerate(items)
        ]


def _padded_tokens(run: tuple[list[_Item], int | None]) -> int:
    members = run[0]
    return len(members) * max(len(item.sequence) for item in members)


@dataclass(frozen=True)
class _Item:
    """One sequence on its way through a run, and where its vectors go."""

    batch: int
    row: int
    sequence: np.ndarray
    spans: np.ndarray | None
