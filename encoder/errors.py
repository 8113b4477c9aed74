"""Errors as the OpenAI API reports them: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

from typing import Any


class APIError(Exception):
    """An error with its HTTP status and the fields of the OpenAI error envelope."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def envelope(self) -> dict[str, Any]:
        """The JSON body clients see."""
        return error_envelope(self.message, self.type, self.param, self.code)


def error_envelope(
    message: str, type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """Build the OpenAI error body."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def invalid(message: str, param: str | None = None, code: str | None = None) -> APIError:
    """A 400 for a request the client must change."""
    return APIError(message, status=400, param=param, code=code)


class EncoderFailure(Exception):
    """The encoder could not embed a chunk (a server-side fault, never the client's input)."""


def raise_failures(results: list[Any]) -> list[Any]:
    """Return encoder results unchanged, or raise the first ``EncoderFailure`` among them.

    The batched encoder returns failures as values, so one bad run fails only its callers.
    """
    for result in results:
        if isinstance(result, EncoderFailure):
            raise result
    return results


# Status codes the HTTP layer maps to an OpenAI ``type``; anything >= 500 is the server's fault.
STATUS_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
}


def type_for_status(status: int) -> str:
    """The OpenAI error ``type`` that goes with an HTTP status."""
    return STATUS_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
