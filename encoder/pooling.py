"""Token states to one vector: pooling, L2 normalisation and Matryoshka truncation."""

from __future__ import annotations

import numpy as np


def mean_pool(states: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Attention-mask mean of ``[batch, seq, width]`` states, as float32 ``[batch, width]``."""
    weights = mask.astype(states.dtype, copy=False)
    # One batched matmul: no [batch, seq, width] temporary for the masked product.
    summed = np.matmul(weights[:, None, :], states)[:, 0, :]
    counts = np.maximum(weights.sum(axis=1, keepdims=True), 1e-9)
    return (summed / counts).astype(np.float32, copy=False)


def cls_pool(states: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The first token's state (for models whose pooling config says CLS)."""
    return np.ascontiguousarray(states[:, 0, :], dtype=np.float32)


def span_means(states: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """Mean of ``[seq, width]`` states over each ``[start, end)`` token span (late chunking)."""
    return np.stack([states[start:end].mean(axis=0) for start, end in spans]).astype(
        np.float32, copy=False
    )


def logits(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A cross-encoder's ``[batch, labels]`` output: already one row per sequence."""
    return np.ascontiguousarray(scores, dtype=np.float32)


POOLERS = {"mean": mean_pool, "cls": cls_pool, "logits": logits}


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def finish(vectors: np.ndarray, dimensions: int | None, normalized: bool) -> np.ndarray:
    """Truncate to ``dimensions`` (Matryoshka) first, then normalise if asked.

    Normalising after truncation equals the official normalise → truncate → renormalise,
    as scaling a vector does not change its normalised prefix.
    """
    if dimensions is not None and dimensions < vectors.shape[1]:
        vectors = vectors[:, :dimensions]
    if normalized:
        vectors = l2_normalize(vectors)
    return np.ascontiguousarray(vectors, dtype=np.float32)
