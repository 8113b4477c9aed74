"""Bad requests and the error each must get: shared by the in-process and end-to-end tests.

Each case: id, raw body bytes, expected HTTP status, expected ``param`` of the envelope, and
the Content-Type sent. The jina-tiny model has 8192 max tokens, width 64, the jina tasks.
``ODD_BUT_VALID`` are strange inputs that are still text: they must embed (200).
"""

from __future__ import annotations

import json
from typing import NamedTuple


class BadRequest(NamedTuple):
    name: str
    body: bytes
    status: int
    param: str | None
    content_type: str = "application/json"


def _j(body: object) -> bytes:
    return json.dumps(body).encode()


LONG_TEXT = "word " * 9000  # ~9002 tokens with specials, over 8192

_CASES: list[tuple] = [
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
    ("lone-surrogate-in-list", b'{"input": ["ok", "\\udfff"]}', 400, "input"),
    ("input-nested-too-deep", _j({"input": [[["a"]]]}), 400, "input"),
    ("input-list-of-nulls", _j({"input": [None]}), 400, "input"),
    ("input-lists-of-strings", _j({"input": [["a"]]}), 400, "input"),
    ("input-huge-float", b'{"input": [1e400]}', 400, "input"),
    ("deep-json-nesting", b'{"input": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, None),
    ("dimensions-huge", _j({"input": "a", "dimensions": 10**30}), 400, "dimensions"),
    ("dimensions-bool", _j({"input": "a", "dimensions": True}), 400, "dimensions"),
    ("encoding-null", _j({"input": "a", "encoding_format": None}), 400, "encoding_format"),
    ("task-empty", _j({"input": "a", "task": ""}), 400, "task"),
    ("max-length-string", _j({"input": "a", "max_length": "512"}), 400, "max_length"),
    ("user-number", _j({"input": "a", "user": 5}), 400, "user"),
    ("invalid-utf8-body", b'{"input": "\xff\xfe"}', 400, None),
    ("embedding-type-unknown", _j({"input": "a", "embedding_type": "int4"}), 400,
     "embedding_type"),
    ("binary-as-base64", _j({"input": "a", "embedding_type": "binary",
                             "encoding_format": "base64"}), 400, "encoding_format"),
    ("base64-as-float", _j({"input": "a", "embedding_type": "base64",
                            "encoding_format": "float"}), 400, "encoding_format"),
    ("late-chunking-string", _j({"input": ["a"], "late_chunking": "true"}), 400,
     "late_chunking"),
    ("late-chunking-ids", _j({"input": [[5, 6]], "late_chunking": True}), 400, "late_chunking"),
    ("late-chunking-empty-chunk", _j({"input": ["a", ""], "late_chunking": True}), 400, "input"),
    ("late-chunking-over-request-cap", _j({"input": ["word " * 60_000] * 6,
                                           "late_chunking": True}), 400, "input"),
    ("text-plain", _j({"input": "a"}), 415, None, "text/plain"),
    ("multipart", _j({"input": "a"}), 415, None, "multipart/form-data; boundary=x"),
    ("body-over-limit", _j({"input": "x" * (33 * 1024 * 1024)}), 413, None),
]
BAD_REQUESTS = [BadRequest(*case) for case in _CASES]

ODD_BUT_VALID = [
    "nul \x00 inside", "zero\u200bwidth\u200djoiners", "\u202eright-to-left override",
    "e\u0301\u0302\u0303 combining", "🏳️‍🌈👩‍👩‍👧‍👦", "\ue000 private use", "\ufeffbom",
    "   ", "\n", "\t\r", "a" * 5000, "😀" * 300, "\U0010fffd", "ｆｕｌｌｗｉｄｔｈ",
]
