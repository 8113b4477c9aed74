"""Optional bearer-token authentication (``EMBEDDINGS_API_KEY`` or a key file)."""

from __future__ import annotations

import hmac
import os
from pathlib import Path

from encoder.errors import EmbeddingError, ErrorKind

API_KEY_ENV = "EMBEDDINGS_API_KEY"


def load_api_key(key_file: str | None) -> str | None:
    """The configured key: ``EMBEDDINGS_API_KEY``, else the first line of ``key_file``.

    None means the service is open, as the old server was.
    """
    key = os.environ.get(API_KEY_ENV, "").strip()
    if not key and key_file:
        key = Path(key_file).expanduser().read_text(encoding="utf-8").strip()
    return key or None


def check_bearer(authorization: str | None, key: str) -> None:
    """Raise a 401 unless ``authorization`` is ``Bearer <key>`` (compared in constant time)."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode("utf-8"), key.encode("utf-8")
    ):
        raise EmbeddingError(ErrorKind.UNAUTHORIZED,
                             "Incorrect or missing API key: send 'Authorization: Bearer <key>'",
                             code="invalid_api_key")
