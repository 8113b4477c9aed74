"""How token sequences travel from the ingress to an encoder replica: the ``Parcel``.

A request's sequences are split into parcels (``request_parcels``); each parcel is one handle
call, so a big request spreads over windows and replicas, and a long document travels alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Parcel:
    """Token sequences of one task, flattened: what one handle call to an encoder carries.

    One flat int32 array plus lengths pickles in a single buffer, unlike a list of lists.
    Each sequence pools to one vector, unless ``spans`` is set (late chunking): then each
    sequence pools to one mean per ``[start, end)`` token span of its own. A rerank pair's
    sequence has a second segment: ``pair_starts`` gives where it starts (its token type 1,
    for models that read token types).
    """

    task_id: int | None
    ids: np.ndarray  # int32, all sequences back to back
    lengths: np.ndarray  # int32, one per sequence
    spans: tuple[np.ndarray, ...] | None = None  # per sequence: int [n, 2] token ranges
    pair_starts: np.ndarray | None = None  # int32, per sequence: its second segment's start

    @classmethod
    def from_lists(
        cls,
        task_id: int | None,
        sequences: Sequence[Sequence[int]],
        spans: Sequence[np.ndarray] | None = None,
        pair_starts: Sequence[int] | None = None,
    ) -> Parcel:
        """Flatten ``sequences`` (with late chunking's token ``spans``, one per sequence, or
        rerank pairs' ``pair_starts``)."""
        lengths = np.fromiter((len(s) for s in sequences), dtype=np.int32, count=len(sequences))
        flat = np.fromiter(
            (t for s in sequences for t in s), dtype=np.int32, count=int(lengths.sum())
        )
        if spans is not None:
            spans = tuple(np.asarray(s, dtype=np.int32).reshape(-1, 2) for s in spans)
        starts = None if pair_starts is None else np.asarray(pair_starts, dtype=np.int32)
        return cls(task_id=task_id, ids=flat, lengths=lengths, spans=spans, pair_starts=starts)

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def outputs(self) -> int:
        """How many vectors this parcel pools to."""
        if self.spans is None:
            return len(self.lengths)
        return sum(len(s) for s in self.spans)

    @property
    def tokens(self) -> int:
        """Tokens in all its sequences."""
        return int(self.lengths.sum())

    @property
    def longest(self) -> int:
        """Tokens in its longest sequence (0 when empty)."""
        return int(self.lengths.max()) if len(self.lengths) else 0

    def sequences(self) -> list[np.ndarray]:
        """The sequences as views into the flat array."""
        return np.split(self.ids, np.cumsum(self.lengths)[:-1])


def split_by_tokens(sequences: Sequence[Sequence[int]], budget: int,
                    alone_above: int | None = None) -> list[range]:
    """Consecutive index ranges whose token sums stay within ``budget`` (at least one each);
    a sequence longer than ``alone_above`` tokens gets a range of its own.

    The ingress sends each range as its own parcel, so one large request is spread over
    windows (and replicas) instead of becoming one giant call, and a long document goes to
    an encoder's long queue without the short inputs around it.
    """
    ranges, start, total = [], 0, 0
    for index, sequence in enumerate(sequences):
        long = alone_above is not None and len(sequence) > alone_above
        if index > start and (long or total + len(sequence) > budget):
            ranges.append(range(start, index))
            start, total = index, 0
        total += len(sequence)
        if long:
            ranges.append(range(start, index + 1))
            start, total = index + 1, 0
    if start < len(sequences):
        ranges.append(range(start, len(sequences)))
    return ranges


def request_parcels(task_id: int | None, sequences: Sequence[Sequence[int]], budget: int,
                    alone_above: int | None = None,
                    pair_starts: Sequence[int] | None = None) -> list[Parcel]:
    """One request's parcels, as the ingress sends them: ``split_by_tokens`` ranges (with
    rerank pairs' ``pair_starts``)."""
    return [Parcel.from_lists(task_id, sequences[r.start : r.stop], pair_starts=None
                              if pair_starts is None else pair_starts[r.start : r.stop])
            for r in split_by_tokens(sequences, budget, alone_above)]
