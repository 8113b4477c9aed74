"""Response encoding cost: stdlib json of float lists vs orjson of float32 rows vs base64.

Usage: python -m benchmarks.json_encoding  (16 vectors of 1024 dims, like one jina request)
"""

from __future__ import annotations

import json
import time

import numpy as np

from encoder.ingress.output import embedding_items, render_json


def per_call_ms(fn, n: int = 50) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1000


def main() -> None:
    vectors = np.random.default_rng(0).standard_normal((16, 1024)).astype(np.float32)

    def stdlib() -> bytes:
        data = [{"object": "embedding", "index": i, "embedding": row.tolist()}
                for i, row in enumerate(vectors)]
        return json.dumps({"data": data}).encode()

    def orjson_rows() -> bytes:
        return render_json({"data": embedding_items(vectors, "float")})

    def base64_rows() -> bytes:
        return render_json({"data": embedding_items(vectors, "base64")})

    for name, fn in (("stdlib json, float lists", stdlib), ("orjson, float32 rows", orjson_rows),
                     ("base64 (float32 bytes)", base64_rows)):
        print(f"{name:>26}: {per_call_ms(fn):6.2f} ms, {len(fn()):7d} bytes")


if __name__ == "__main__":
    main()
