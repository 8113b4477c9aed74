"""OpenAI's Files and Batches routes (``/v1/files``, ``/v1/batches``) over a ``BatchStore``.

The routes only store and read: a new or cancelled batch wakes the runner (``wake``), which
does the work elsewhere (in Ray: its own deployment), never in this event loop. Ids are
checked by the store (an id it cannot have made is a 404), metadata by ``CreateBatch``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, StrictStr, field_validator

from encoder.batches.lines import ENDPOINT
from encoder.batches.store import VALID_ID, BatchStore
from encoder.errors import EmbeddingError, ErrorKind, invalid
from encoder.http.body import read_json_body
from encoder.ingress.schemas import parse_request
from encoder.settings import BatchApiSettings

Wake = Callable[[], Awaitable[None]]
# File and batch ids in path parameters, as the OpenAPI document describes them (the store
# checks them: an id it cannot have made is a 404).
FileId = Annotated[str, Path(json_schema_extra={"pattern": f"^{VALID_ID.pattern}$"})]
BatchId = Annotated[str, Path(json_schema_extra={"pattern": f"^{VALID_ID.pattern}$"})]

# OpenAI's limits on a batch's metadata.
METADATA_KEYS = 16
METADATA_KEY_CHARS = 64
METADATA_VALUE_CHARS = 512
# The multipart body of POST /v1/files, for the OpenAPI document (the route reads it by hand).
_UPLOAD_SCHEMA = {"requestBody": {"required": True, "content": {"multipart/form-data": {
    "schema": {"type": "object", "required": ["file", "purpose"], "properties": {
        "file": {"type": "string", "format": "binary"},
        "purpose": {"type": "string", "enum": ["batch"]}}}}}}}


class CreateBatch(BaseModel):
    """Body of ``POST /v1/batches``."""

    model_config = ConfigDict(extra="forbid")

    input_file_id: StrictStr
    endpoint: StrictStr
    completion_window: StrictStr
    metadata: dict[StrictStr, StrictStr] | None = None

    @field_validator("metadata")
    @classmethod
    def _openai_limits(cls, metadata: dict[str, str] | None) -> dict[str, str] | None:
        if metadata is None:
            return None
        if len(metadata) > METADATA_KEYS:
            raise ValueError(f"at most {METADATA_KEYS} keys, got {len(metadata)}")
        for key, value in metadata.items():
            if len(key) > METADATA_KEY_CHARS:
                raise ValueError(f"keys are at most {METADATA_KEY_CHARS} characters")
            if len(value) > METADATA_VALUE_CHARS:
                raise ValueError(f"values are at most {METADATA_VALUE_CHARS} characters")
        return metadata


def batch_router(store: BatchStore, wake: Wake, settings: BatchApiSettings,
                 max_body_bytes: int) -> APIRouter:
    """The Files and Batches routes, OpenAI's shapes and errors."""
    router = APIRouter()
    router.include_router(_files_router(store, settings.max_file_bytes))
    router.include_router(_batches_router(store, wake, settings, max_body_bytes))
    return router


def _files_router(store: BatchStore, max_file_bytes: int) -> APIRouter:
    router = APIRouter()

    @router.post("/v1/files", openapi_extra=_UPLOAD_SCHEMA)
    async def create_file(request: Request) -> dict:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_file_bytes + 64 * 1024:
            raise _too_large(max_file_bytes)
        if "multipart/form-data" not in request.headers.get("content-type", ""):
            raise EmbeddingError(ErrorKind.UNSUPPORTED_MEDIA, "upload files as "
                                 "multipart/form-data with fields 'file' and 'purpose'",
                                 code="unsupported_media_type")
        async with request.form(max_files=1, max_fields=4) as form:
            purpose, upload = form.get("purpose"), form.get("file")
            if purpose != "batch":
                raise invalid("'purpose' must be 'batch' (the only purpose this server "
                              "serves)", param="purpose")
            if upload is None or isinstance(upload, str):
                raise invalid("'file' is required", param="file")
            data = await upload.read(max_file_bytes + 1)
            if len(data) > max_file_bytes:
                raise _too_large(max_file_bytes)
            name = upload.filename or "upload.jsonl"
        return await asyncio.to_thread(store.create_file, name, "batch", data)

    @router.get("/v1/files")
    async def list_files(purpose: str | None = None, after: str | None = None,
                         limit: int = 10_000, order: str = "desc") -> dict:
        return await asyncio.to_thread(store.list_files, purpose, after, limit, order)

    @router.get("/v1/files/{file_id}")
    async def get_file(file_id: FileId) -> dict:
        return await asyncio.to_thread(store.get_file, file_id)

    @router.get("/v1/files/{file_id}/content")
    async def file_content(file_id: FileId) -> Response:
        data = await asyncio.to_thread(store.file_content, file_id)
        return Response(data, media_type="application/octet-stream")

    @router.delete("/v1/files/{file_id}")
    async def delete_file(file_id: FileId) -> dict:
        return await asyncio.to_thread(store.delete_file, file_id)

    return router


def _batches_router(store: BatchStore, wake: Wake, settings: BatchApiSettings,
                    max_body_bytes: int) -> APIRouter:
    router = APIRouter()

    # The body is parsed by hand (exact error envelopes): its schema is given to OpenAPI here.
    schema = {"requestBody": {"required": True, "content": {"application/json": {
        "schema": CreateBatch.model_json_schema()}}}}

    @router.post("/v1/batches", openapi_extra=schema)
    async def create_batch(request: Request) -> dict:
        body = parse_request(CreateBatch, await read_json_body(request, max_body_bytes))
        if body.endpoint != ENDPOINT:
            raise invalid(f"'endpoint' must be {ENDPOINT!r}: this server embeds",
                          param="endpoint")
        if body.completion_window != "24h":
            raise invalid("'completion_window' must be '24h'", param="completion_window")
        batch = await asyncio.to_thread(store.create_batch, body.input_file_id, body.endpoint,
                                        body.completion_window, body.metadata,
                                        settings.completion_window_s)
        await wake()
        return batch

    @router.get("/v1/batches")
    async def list_batches(after: str | None = None, limit: int = 20) -> dict:
        return await asyncio.to_thread(store.list_batches, after, limit)

    @router.get("/v1/batches/{batch_id}")
    async def get_batch(batch_id: BatchId) -> dict:
        return await asyncio.to_thread(lambda: store.view(store.get_batch(batch_id)))

    @router.post("/v1/batches/{batch_id}/cancel")
    async def cancel_batch(batch_id: BatchId) -> dict:
        batch = await asyncio.to_thread(store.request_cancel, batch_id)
        await wake()
        return batch

    return router


def _too_large(limit: int) -> EmbeddingError:
    return EmbeddingError(ErrorKind.TOO_LARGE, f"the file is larger than {limit} bytes",
                          param="file", code="file_too_large")
