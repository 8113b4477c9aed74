"""OpenAI Batch API input lines: validation as OpenAI does it, and each line's answer.

Used by the bulk job (an OpenAI batch file run offline) and by ``/v1/batches`` (the same file
run on the service), so both validate and answer exactly alike. Input lines are
``{"custom_id", "method": "POST", "url": "/v1/embeddings", "body": {...}}``; each answer is
OpenAI's output line ``{"id", "custom_id", "response": {"status_code", "request_id", "body"},
"error"}``, whose body is what the synchronous request would have got: the embeddings
response or the error envelope.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from encoder.errors import EmbeddingError
from encoder.ingress.models import ModelRouter
from encoder.ingress.schemas import parse_embedding_request
from encoder.ingress.service import EmbeddingsService

ENDPOINT = "/v1/embeddings"
MAX_LINES = 50_000  # OpenAI's limit per batch


@dataclass(frozen=True)
class BatchLine:
    """One valid input line: its number (1-based), ``custom_id`` and request body."""

    number: int
    custom_id: str
    body: bytes


def parse_batch_file(data: bytes, max_lines: int = MAX_LINES
                     ) -> tuple[list[BatchLine], list[dict[str, Any]]]:
    """The file's lines, or OpenAI's ``errors.data`` entries if it fails validation.

    Validation fails the whole batch, as OpenAI's does: a line that is not a JSON object, a
    ``url`` other than ``/v1/embeddings``, a ``method`` other than POST, a missing or
    duplicate ``custom_id``, a ``body`` that is not an object, or more than ``max_lines``.
    """
    lines, errors, seen = [], [], set()
    raw_lines = [raw for raw in data.splitlines() if raw.strip()]
    if not raw_lines:
        return [], [_problem("empty_file", "the input file has no lines", None)]
    if len(raw_lines) > max_lines:
        return [], [_problem("too_many_requests", f"the input file has {len(raw_lines)} "
                             f"lines, more than the limit of {max_lines}", None)]
    for number, raw in enumerate(raw_lines, start=1):
        try:
            line = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            errors.append(_problem("invalid_json_line", "this line is not valid JSON", number))
            continue
        if not isinstance(line, dict):
            errors.append(_problem("invalid_request", "a line must be a JSON object", number))
            continue
        custom_id = line.get("custom_id")
        if line.get("url") != ENDPOINT:
            errors.append(_problem("invalid_url", f"'url' must be {ENDPOINT!r}, got "
                                   f"{line.get('url')!r}", number, "url"))
        elif str(line.get("method", "POST")).upper() != "POST":
            errors.append(_problem("invalid_method", "'method' must be POST", number, "method"))
        elif not isinstance(custom_id, str) or not custom_id:
            errors.append(_problem("missing_custom_id", "'custom_id' must be a non-empty "
                                   "string", number, "custom_id"))
        elif custom_id in seen:
            errors.append(_problem("duplicate_custom_id", f"'custom_id' {custom_id!r} is used "
                                   "by an earlier line", number, "custom_id"))
        elif not isinstance(line.get("body"), dict):
            errors.append(_problem("invalid_body", "'body' must be a JSON object", number,
                                   "body"))
        else:
            seen.add(custom_id)
            lines.append(BatchLine(number, custom_id, json.dumps(line["body"]).encode()))
    return (lines, []) if not errors else ([], errors)


async def answer_line(models: ModelRouter | EmbeddingsService,
                      line: BatchLine) -> tuple[bool, dict]:
    """``(succeeded, output line)``: what ``POST /v1/embeddings`` with the line's body gives
    (its ``model`` picks one of ``models``)."""
    request_id = f"req_{uuid.uuid4().hex}"
    try:
        request = parse_embedding_request(line.body)
        service = ModelRouter.of(models).embeddings(request.model)
        body: dict = await service.embeddings(request)
        status = 200
    except EmbeddingError as exc:
        body, status = exc.envelope(), exc.status
    return status == 200, {
        "id": f"batch_req_{uuid.uuid4().hex}",
        "custom_id": line.custom_id,
        "response": {"status_code": status, "request_id": request_id, "body": body},
        "error": None,
    }


def expired_line(line: BatchLine) -> dict:
    """OpenAI's error-file line for a request its batch's window closed on."""
    return {"id": f"batch_req_{uuid.uuid4().hex}", "custom_id": line.custom_id,
            "response": None,
            "error": {"code": "batch_expired", "message": "This request could not be executed "
                      "before the completion window expired."}}


def _problem(code: str, message: str, line: int | None,
             param: str | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "param": param, "line": line}
