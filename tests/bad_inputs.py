"""Bad requests and the error each must get: shared by the in-process and end-to-end tests.

Each case: (id, raw body bytes, expected HTTP status, expected ``param`` of the envelope).
The jina-tiny model has 8192 max tokens, width 64, and the five jina tasks.
"""

from __future__ import annotations

import json


def _j(body: object) -> bytes:
    return json.dumps(body).encode()


LONG_TEXT = "word " * 9000  # ~9002 tokens with specials, over 8192

BAD_REQUESTS: list[tuple[str, bytes, int, str | None]] = [
    ("not-json", b"hello", 400, None),
    ("truncated-json", b'{"input": ["abc"', 400, None),
    ("json-array-body", _j(["a"]), 400, None),
    ("json-string-body", _j("a"), 400, None),
    ("empty-body", b"", 400, None),
    ("missing-input", _j({"model": "x"}), 400, "input"),
    ("input-null", _j({"input": None}), 400, "input"),
    ("input-number", _j({"input": 5}), 400, "input"),
    ("input-object", _j({"input": {"a": 1}}), 400, "input"),
    ("input-empty-string", _j({"input": ""}), 400, "input"),
    ("input-empty-list", _j({"input": []}), 400, "input"),
    ("input-list-with-empty-string", _j({"input": ["ok", ""]}), 400, "input"),
    ("input-mixed-str-int", _j({"input": ["a", 1]}), 400, "input"),
    ("input-list-of-floats", _j({"input": [1.5, 2.5]}), 400, "input"),
    ("input-nested-empty", _j({"input": [[]]}), 400, "input"),
    ("input-bool-list", _j({"input": [True, False]}), 400, "input"),
    ("too-many-inputs", _j({"input": ["a"] * 2049}), 400, "input"),
    ("token-id-negative", _j({"input": [0, -1, 2]}), 400, "input"),
    ("token-id-out-of-vocab", _j({"input": [0, 250002, 2]}), 400, "input"),
    ("token-id-huge", b'{"input": [0, 99999999999999999999999, 2]}', 400, "input"),
    ("too-long", _j({"input": LONG_TEXT}), 400, "input"),
    ("too-long-ids", _j({"input": [5] * 8193}), 400, "input"),
    ("unknown-task", _j({"input": "a", "task": "summarize"}), 400, "task"),
    ("task-number", _j({"input": "a", "task": 3}), 400, "task"),
    ("dimensions-zero", _j({"input": "a", "dimensions": 0}), 400, "dimensions"),
    ("dimensions-negative", _j({"input": "a", "dimensions": -8}), 400, "dimensions"),
    ("dimensions-over-width", _j({"input": "a", "dimensions": 65}), 400, "dimensions"),
    ("dimensions-string", _j({"input": "a", "dimensions": "16"}), 400, "dimensions"),
    ("dimensions-float", _j({"input": "a", "dimensions": 16.5}), 400, "dimensions"),
    ("encoding-unknown", _j({"input": "a", "encoding_format": "int8"}), 400, "encoding_format"),
    ("normalized-string", _j({"input": "a", "normalized": "yes"}), 400, "normalized"),
    ("truncate-number", _j({"input": "a", "truncate": 1}), 400, "truncate"),
    ("max-length-zero", _j({"input": "a", "max_length": 0}), 400, "max_length"),
    ("max-length-below-specials", _j({"input": "a", "max_length": 2}), 400, "max_length"),
    ("model-number", _j({"input": "a", "model": 3}), 400, "model"),
    ("unknown-field", _j({"input": "a", "temperature": 1}), 400, "temperature"),
    ("nan-dimensions", b'{"input": "a", "dimensions": NaN}', 400, "dimensions"),
    ("lone-surrogate", b'{"input": "bad \\ud800 text"}', 400, "input"),
]
