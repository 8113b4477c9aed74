"""Output encodings of embedding vectors and the JSON rendering of responses."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import orjson

_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def embedding_items(
    vectors: np.ndarray, encoding_format: str, values: str = "float"
) -> list[dict[str, Any]]:
    """The ``data`` list: one ``{"object", "index", "embedding"}`` per vector, in order.

    ``values``: "float" (float32), or "ubinary"/"binary" (sign bits packed 8 per byte, as
    uint8, or int8 = uint8 - 128, as sentence-transformers' ``quantize_embeddings``).
    ``float`` keeps numpy rows (orjson writes float32 in their shortest exact form);
    ``base64`` is the little-endian float32 bytes, exactly what openai-python decodes.
    """
    if values != "float":
        vectors = quantize_binary(vectors, signed=values == "binary")
    if encoding_format == "base64":
        little = vectors.astype("<f4", copy=False)
        rows = [base64.b64encode(row.tobytes()).decode("ascii") for row in little]
    else:
        rows = list(vectors)
    return [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(rows)]


def quantize_binary(vectors: np.ndarray, signed: bool) -> np.ndarray:
    """One bit per dimension (value > 0), packed big-endian into bytes (``np.packbits``).

    A width that is not a multiple of 8 is padded with zero bits, as numpy does.
    """
    packed = np.packbits(vectors > 0, axis=-1)
    if signed:
        return (packed.astype(np.int16) - 128).astype(np.int8)
    return packed


def render_json(payload: Any) -> bytes:
    """Serialise a response body (numpy arrays included)."""
    return orjson.dumps(payload, option=_JSON_OPTIONS)
