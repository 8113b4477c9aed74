"""Late chunking: the inputs are chunks of one document, encoded together.

The chunks are joined with single spaces and prefixed with the task's instruction; the
document is tokenized once and each token is given to the chunk that holds its last
character (prefix, joining spaces and special tokens belong to no chunk). A chunk's vector
is the mean of its tokens' states, so every chunk sees the whole document as context.

A document longer than the window (the model's token limit) is encoded in windows that
overlap by ``overlap`` tokens; each token takes its state from the window in which it is
farthest from an edge (the overlap is split in the middle), so every token has at least
``overlap / 2`` tokens of context on both sides wherever the document allows it. Every
window carries the special tokens; only the first carries the instruction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from encoder.errors import invalid
from encoder.ingress.tokenize import TextTokenizer


@dataclass(frozen=True)
class LateChunkPlan:
    """What to run for one document and how to turn the results into chunk vectors.

    ``spans[w]`` are token ranges in ``windows[w]``; flattened in window order they are
    the pieces, and ``piece_chunk``/``piece_tokens`` say whose and how big each piece is.
    """

    windows: list[np.ndarray]
    spans: list[np.ndarray]
    piece_chunk: np.ndarray
    piece_tokens: np.ndarray
    chunks: int
    tokens: int


def plan_late_chunks(
    tokenizer: TextTokenizer, chunks: Sequence[str], prefix: str, window: int, overlap: int
) -> LateChunkPlan:
    """Tokenize the document once and plan its windows; a chunk without tokens is a 400."""
    document, starts, ends = _join(chunks, prefix)
    ids, offsets = tokenizer.content_with_offsets(document)
    first, last = _chunk_token_ranges(_token_owners(offsets, starts, ends), len(chunks))

    lead, tail = tokenizer.lead_ids, tokenizer.tail_ids
    capacity = window - len(lead) - len(tail)
    if capacity < 2:
        raise invalid(f"the window of {window} tokens is too small for late chunking",
                      param="max_length")
    overlap = min(overlap, capacity // 2)
    windows, spans, piece_chunk, piece_tokens = [], [], [], []
    for start, stop, own_start, own_stop in _windows(len(ids), capacity, overlap):
        windows.append(np.concatenate([lead, ids[start:stop], tail]).astype(np.int64))
        lo = np.maximum(first, own_start)
        hi = np.minimum(last, own_stop)
        inside = np.flatnonzero(hi > lo)
        local = np.stack([lo[inside], hi[inside]], axis=1) - start + len(lead)
        spans.append(local)
        piece_chunk.extend(inside.tolist())
        piece_tokens.extend((hi[inside] - lo[inside]).tolist())
    return LateChunkPlan(
        windows=windows,
        spans=spans,
        piece_chunk=np.asarray(piece_chunk, dtype=np.int64),
        piece_tokens=np.asarray(piece_tokens, dtype=np.float64),
        chunks=len(chunks),
        tokens=len(ids) + len(lead) + len(tail),
    )


def combine_pieces(plan: LateChunkPlan, piece_means: np.ndarray) -> np.ndarray:
    """Chunk vectors ``[chunks, width]``: token-weighted means of each chunk's pieces."""
    width = piece_means.shape[1]
    sums = np.zeros((plan.chunks, width), dtype=np.float64)
    np.add.at(sums, plan.piece_chunk, piece_means * plan.piece_tokens[:, None])
    counts = np.bincount(plan.piece_chunk, weights=plan.piece_tokens, minlength=plan.chunks)
    return (sums / counts[:, None]).astype(np.float32)


def _join(chunks: Sequence[str], prefix: str) -> tuple[str, np.ndarray, np.ndarray]:
    lengths = np.fromiter((len(c) for c in chunks), dtype=np.int64, count=len(chunks))
    # Each chunk starts one character (the joining space) after the previous one ends.
    starts = len(prefix) + np.concatenate([[0], np.cumsum(lengths[:-1] + 1)])
    return prefix + " ".join(chunks), starts, starts + lengths


def _token_owners(offsets: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The chunk holding each token's last character, or -1 (prefix, space, empty token)."""
    last_char = offsets[:, 1] - 1
    chunk = np.searchsorted(starts, last_char, side="right") - 1
    inside = (chunk >= 0) & (offsets[:, 1] > offsets[:, 0])
    inside &= last_char < ends[np.clip(chunk, 0, None)]
    return np.where(inside, chunk, -1)


def _chunk_token_ranges(owner: np.ndarray, chunks: int) -> tuple[np.ndarray, np.ndarray]:
    """Each chunk's ``[first, last)`` token range; owners rise through the document."""
    positions = np.flatnonzero(owner >= 0)
    owners = owner[positions]
    wanted = np.arange(chunks)
    lo = np.searchsorted(owners, wanted, side="left")
    hi = np.searchsorted(owners, wanted, side="right")
    empty = np.flatnonzero(lo == hi)
    if len(empty):
        raise invalid(f"input[{empty[0]}] has no tokens of its own", param="input")
    return positions[lo], positions[hi - 1] + 1


def _windows(tokens: int, capacity: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """``(start, stop, own_start, own_stop)`` per window over ``tokens`` content tokens."""
    if tokens <= capacity:
        return [(0, tokens, 0, tokens)]
    stride = capacity - overlap
    out, start = [], 0
    while True:
        stop = min(start + capacity, tokens)
        own_start = 0 if start == 0 else start + overlap // 2
        own_stop = tokens if stop == tokens else stop - (overlap - overlap // 2)
        out.append((start, stop, own_start, own_stop))
        if stop == tokens:
            return out
        start += stride
