"""How token sequences travel to the encoder and are packed into ONNX runs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TokenBatch:
    """Token sequences of one task, flattened: what the ingress sends in one handle call.

    One flat int32 array plus lengths pickles in a single buffer, unlike a list of lists.
    Each sequence pools to one vector, unless ``spans`` is set (late chunking): then each
    sequence pools to one mean per ``[start, end)`` token span of its own.
    """

    task_id: int | None
    ids: np.ndarray  # int32, all sequences back to back
    lengths: np.ndarray  # int32, one per sequence
    # What it counts for in the coalescers and ``@serve.batch``: its tokens, capped at the
    # encoder's sort window so that a lone over-window sequence still fits in a window of
    # its own (and takes the whole window: one such sequence per encoder pipeline call).
    size: int = 1
    spans: tuple[np.ndarray, ...] | None = None  # per sequence: int [n, 2] token ranges

    @classmethod
    def from_lists(
        cls,
        task_id: int | None,
        sequences: Sequence[Sequence[int]],
        budget: int,
        spans: Sequence[np.ndarray] | None = None,
    ) -> TokenBatch:
        """Flatten ``sequences``; ``budget`` caps ``size`` (the encoder's sort window)."""
        lengths = np.fromiter((len(s) for s in sequences), dtype=np.int32, count=len(sequences))
        flat = np.fromiter(
            (t for s in sequences for t in s), dtype=np.int32, count=int(lengths.sum())
        )
        size = max(1, min(int(lengths.sum()), budget))
        if spans is not None:
            spans = tuple(np.asarray(s, dtype=np.int32).reshape(-1, 2) for s in spans)
        return cls(task_id=task_id, ids=flat, lengths=lengths, size=size, spans=spans)

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def outputs(self) -> int:
        """How many vectors this batch pools to."""
        if self.spans is None:
            return len(self.lengths)
        return sum(len(s) for s in self.spans)

    @property
    def tokens(self) -> int:
        return int(self.lengths.sum())

    def sequences(self) -> list[np.ndarray]:
        """The sequences as views into the flat array."""
        return np.split(self.ids, np.cumsum(self.lengths)[:-1])


def split_by_tokens(sequences: Sequence[Sequence[int]], budget: int) -> list[range]:
    """Consecutive index ranges whose token sums stay within ``budget`` (at least one each).

    The ingress sends each range as its own handle call, so one large request is spread
    over encoder batches (and replicas) instead of becoming one giant call.
    """
    ranges, start, total = [], 0, 0
    for index, sequence in enumerate(sequences):
        if index > start and total + len(sequence) > budget:
            ranges.append(range(start, index))
            start, total = index, 0
        total += len(sequence)
    if sequences:
        ranges.append(range(start, len(sequences)))
    return ranges


def request_batches(
    task_id: int | None, sequences: Sequence[Sequence[int]], budget: int,
    window: int | None = None,
) -> list[TokenBatch]:
    """One request's token batches, as the ingress sends them: ``split_by_tokens`` ranges
    of ``budget`` tokens, each counting for at most ``window`` (default ``budget``)."""
    cap = budget if window is None else window
    return [TokenBatch.from_lists(task_id, sequences[r.start : r.stop], cap)
            for r in split_by_tokens(sequences, budget)]


def plan_runs(lengths: np.ndarray, budget: int) -> list[np.ndarray]:
    """Pack sequences into ONNX runs of at most ``budget`` padded tokens (longest x count).

    Sequences are sorted longest first so each run pads to a similar length; a sequence
    longer than the budget runs alone. Returns index arrays into ``lengths``.
    """
    order = np.argsort(-lengths, kind="stable")
    runs, start = [], 0
    while start < len(order):
        longest = int(lengths[order[start]])
        count = max(1, budget // max(longest, 1))
        runs.append(order[start : start + count])
        start += count
    return runs


def plan_even_runs(lengths: np.ndarray, budget: int, parts: int) -> list[np.ndarray]:
    """Runs as ``plan_runs`` packs them, but a multiple of ``parts`` runs of even size.

    For ``parts`` runs going at once: greedy packing leaves a small last run, and the part
    that gets it idles while the others finish (32 queued queries: runs of 24 and 8). The
    smallest budget that still needs no more runs than the next multiple of ``parts``
    evens them out (two runs of 16). Never more runs than sequences.
    """
    runs = plan_runs(lengths, budget)
    if parts <= 1 or len(lengths) < 2:
        return runs
    target = min(len(lengths), -(-len(runs) // parts) * parts)
    low, high = 1, budget  # fewer runs with a larger budget: search the smallest that fits
    while low < high:
        middle = (low + high) // 2
        if len(plan_runs(lengths, middle)) <= target:
            high = middle
        else:
            low = middle + 1
    return plan_runs(lengths, low)


def pad(sequences: Sequence[np.ndarray], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad to a ``[batch, longest]`` int64 id matrix and its attention mask."""
    longest = max(len(s) for s in sequences)
    ids = np.full((len(sequences), longest), pad_id, dtype=np.int64)
    mask = np.zeros((len(sequences), longest), dtype=np.int64)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = sequence
        mask[row, : len(sequence)] = 1
    return ids, mask
