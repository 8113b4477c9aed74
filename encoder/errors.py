"""Domain errors, and the one table that maps them to HTTP status and OpenAI's error type.

The core raises ``EmbeddingError`` with an ``ErrorKind``; ``HTTP_STATUS`` below is the one
place a kind becomes a status (``EmbeddingError.status``, read by the HTTP app and by the
Batch API's output lines). Clients see OpenAI's envelope:
``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

from enum import Enum
from typing import Any


class ErrorKind(Enum):
    """What went wrong, as the core knows it (no HTTP here)."""

    INVALID_REQUEST = "invalid_request"  # the client must change the request
    UNAUTHORIZED = "unauthorized"
    NOT_FOUND = "not_found"
    TOO_LARGE = "too_large"  # the body, as sent or decoded
    UNSUPPORTED_MEDIA = "unsupported_media"  # content type or encoding
    OVERLOADED = "overloaded"  # admission refused: retry later
    ENCODER_FAILED = "encoder_failed"  # an ONNX run failed: a server fault
    UNAVAILABLE = "unavailable"  # no encoder replica could take it: retry
    TIMEOUT = "timeout"  # admitted, but not answered in time


# The one table: kind -> (HTTP status, OpenAI error type).
HTTP_STATUS: dict[ErrorKind, tuple[int, str]] = {
    ErrorKind.INVALID_REQUEST: (400, "invalid_request_error"),
    ErrorKind.UNAUTHORIZED: (401, "invalid_request_error"),
    ErrorKind.NOT_FOUND: (404, "invalid_request_error"),
    ErrorKind.TOO_LARGE: (413, "invalid_request_error"),
    ErrorKind.UNSUPPORTED_MEDIA: (415, "invalid_request_error"),
    ErrorKind.OVERLOADED: (429, "rate_limit_error"),
    ErrorKind.ENCODER_FAILED: (500, "server_error"),
    ErrorKind.UNAVAILABLE: (503, "server_error"),
    ErrorKind.TIMEOUT: (504, "server_error"),
}


class EmbeddingError(Exception):
    """An error of the service: its kind, message and the envelope's ``param``/``code``.

    ``retry_after_s`` is set where retrying later is the answer (overload, unavailable).
    Instances cross Ray calls (an encoder returns them as results), so they pickle.
    """

    def __init__(self, kind: ErrorKind, message: str, param: str | None = None,
                 code: str | None = None, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.param = param
        self.code = code
        self.retry_after_s = retry_after_s

    def __reduce__(self):
        return type(self), (self.kind, self.message, self.param, self.code,
                            self.retry_after_s)

    @property
    def status(self) -> int:
        """The HTTP status of this error's kind."""
        return HTTP_STATUS[self.kind][0]

    def envelope(self) -> dict[str, Any]:
        """The JSON body clients see."""
        return error_envelope(self.message, HTTP_STATUS[self.kind][1], self.param, self.code)

    def headers(self) -> dict[str, str]:
        """HTTP headers that go with it (``Retry-After``, ``WWW-Authenticate``)."""
        headers = {}
        if self.retry_after_s is not None:
            headers["Retry-After"] = str(self.retry_after_s)
        if self.kind is ErrorKind.UNAUTHORIZED:
            headers["WWW-Authenticate"] = "Bearer"
        return headers


def error_envelope(message: str, type: str, param: str | None = None,
                   code: str | None = None) -> dict[str, Any]:
    """OpenAI's error body."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def type_for_status(status: int) -> str:
    """OpenAI's error type for a status the framework chose itself (404/405 routes, ...)."""
    for known, kind in HTTP_STATUS.values():
        if known == status:
            return kind
    return "server_error" if status >= 500 else "invalid_request_error"


def invalid(message: str, param: str | None = None, code: str | None = None) -> EmbeddingError:
    """A request the client must change (HTTP 400)."""
    return EmbeddingError(ErrorKind.INVALID_REQUEST, message, param, code)


def raise_failures(results: list[Any]) -> list[Any]:
    """Return encoder results unchanged, or raise the first ``EmbeddingError`` among them.

    The encoder returns failures as values, so one bad run fails only its callers.
    """
    for result in results:
        if isinstance(result, EmbeddingError):
            raise result
    return results
