"""Output encodings of embedding vectors and the JSON rendering of responses."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import orjson

_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def embedding_items(vectors: np.ndarray, encoding_format: str) -> list[dict[str, Any]]:
    """The ``data`` list: one ``{"object", "index", "embedding"}`` per vector, in order.

    ``float`` keeps numpy rows (orjson writes float32 in their shortest exact form);
    ``base64`` is the little-endian float32 bytes, exactly what openai-python decodes.
    """
    if encoding_format == "base64":
        little = vectors.astype("<f4", copy=False)
        rows = [base64.b64encode(row.tobytes()).decode("ascii") for row in little]
    else:
        rows = list(vectors)
    return [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(rows)]


def render_json(payload: Any) -> bytes:
    """Serialise a response body (numpy arrays included)."""
    return orjson.dumps(payload, option=_JSON_OPTIONS)
