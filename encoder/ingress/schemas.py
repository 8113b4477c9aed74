"""Request schema of ``POST /v1/embeddings`` (OpenAI fields plus Jina's) and its parsing."""

from __future__ import annotations

import json
from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError

from encoder.errors import EmbeddingError, invalid

InputType = Union[StrictStr, list[StrictStr], list[StrictInt], list[list[StrictInt]]]

INPUT_SHAPE = (
    "'input' must be a string, an array of strings, an array of token ids (integers) "
    "or an array of arrays of token ids"
)


class EmbeddingRequest(BaseModel):
    """Body of ``POST /v1/embeddings``.

    OpenAI fields: input, model (accepted, the served model answers), encoding_format,
    dimensions, user (ignored). Jina fields: task, normalized, truncate, late_chunking,
    embedding_type. ``max_length`` is kept from the old server: a per-request token cap that
    implies truncation unless ``truncate`` is explicitly false (with late chunking it is the
    window size instead).
    """

    model_config = ConfigDict(extra="forbid")

    input: InputType
    model: StrictStr | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: StrictInt | None = Field(default=None, ge=1)
    user: StrictStr | None = None
    task: StrictStr | None = None
    normalized: StrictBool = True
    truncate: StrictBool | None = None
    max_length: StrictInt | None = Field(default=None, ge=1)
    late_chunking: StrictBool = False
    embedding_type: Literal["float", "base64", "binary", "ubinary"] = "float"

    def output_format(self) -> tuple[str, str]:
        """``(values, wire)``: float32/int8/uint8 values, sent as JSON numbers or base64.

        ``embedding_type`` (Jina) picks the values, ``encoding_format`` (OpenAI) the wire
        form. Jina's ``"base64"`` is float32 sent as base64. Binary vectors are sent as JSON
        integers only: base64 would be decoded as float32 by openai-python, which sends
        ``encoding_format: "base64"`` unless told otherwise, so that pair is a 400.
        """
        kind = self.embedding_type
        wire = self.encoding_format if "encoding_format" in self.model_fields_set else None
        if kind == "base64":
            if wire == "float":
                raise _conflict('"embedding_type": "base64" asks for base64')
            return "float", "base64"
        if kind in ("binary", "ubinary"):
            if wire == "base64":
                raise _conflict(
                    f'"embedding_type": "{kind}" vectors are JSON integers; send '
                    '"encoding_format": "float" (openai-python: encoding_format="float")'
                )
            return kind, "float"
        return "float", wire or "float"


def _conflict(reason: str) -> EmbeddingError:
    return invalid(f"'encoding_format' conflicts with 'embedding_type': {reason}",
                   param="encoding_format")


class TokenizeRequest(BaseModel):
    """Body of ``POST /tokenize`` (TEI's fields, plus ``task`` to include its instruction
    and ``model`` to pick an embeddings model)."""

    model_config = ConfigDict(extra="forbid")

    inputs: Union[StrictStr, list[StrictStr]]
    add_special_tokens: StrictBool = True
    task: StrictStr | None = None
    model: StrictStr | None = None


def parse_embedding_request(body: bytes) -> EmbeddingRequest:
    """Validate a raw JSON body; every failure is a 400 naming the offending field."""
    request = parse_request(EmbeddingRequest, body)
    request.output_format()  # conflicting formats fail here, before any work
    return request


def parse_request(schema: type[BaseModel], body: bytes):
    """Validate a raw JSON body against ``schema``; every failure is a 400 naming the field."""
    try:
        return schema.model_validate_json(body)
    except ValidationError as exc:
        if exc.errors()[0]["type"] != "json_invalid":
            raise _as_api_error(exc) from None
        first = exc
    # The fast parser rejects JSON that escapes a lone surrogate ("\ud800"); the stdlib
    # parser accepts it, so the error can name the input that holds it (tokenizing rejects it).
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise _as_api_error(first) from None
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise _as_api_error(exc) from None


def _as_api_error(exc: ValidationError) -> EmbeddingError:
    error = exc.errors(include_url=False)[0]
    kind, loc = error["type"], error["loc"]
    if kind == "json_invalid":
        return invalid(f"request body is not valid JSON: {error.get('ctx', {}).get('error', '')}")
    if not loc:
        return invalid("request body must be a JSON object")
    param = str(loc[0])
    if kind == "missing":
        return invalid(f"'{param}' is required", param=param)
    if kind == "extra_forbidden":
        return invalid(f"Unrecognized request argument supplied: {param}", param=param)
    if param == "input":
        return invalid(INPUT_SHAPE, param="input")
    return invalid(f"invalid '{param}': {error['msg']}", param=param)
