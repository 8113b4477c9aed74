"""The ingress logic as a plain class: request in, OpenAI response out, no Ray or HTTP here.

It is given an ``embed`` coroutine that turns token batches into pooled vectors: in Ray that
calls encoder replicas through a deployment handle, in tests an in-process pipeline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import numpy as np

from encoder.admission import AdmissionControl
from encoder.api import EmbeddingRequest
from encoder.batching import TokenBatch, split_by_tokens
from encoder.errors import APIError, invalid, raise_failures
from encoder.model_card import ModelCard
from encoder.output import embedding_items
from encoder.pipeline import EmbeddingPipeline
from encoder.pooling import finish
from encoder.settings import ServiceSettings
from encoder.tokenize import TextTokenizer

Embedder = Callable[[list[TokenBatch]], Awaitable[list[np.ndarray]]]

# Below this many characters tokenizing inline is cheaper than a hop to a worker thread.
_INLINE_TOKENIZE_CHARS = 4096


class EmbeddingsService:
    """Validates and tokenizes requests, sends token batches to ``embed``, builds responses."""

    def __init__(
        self,
        settings: ServiceSettings,
        card: ModelCard,
        tokenizer: TextTokenizer,
        embed: Embedder,
    ) -> None:
        if card.tasks and settings.default_task not in card.tasks:
            raise ValueError(
                f"default_task {settings.default_task!r} is not one of the model's tasks "
                f"{list(card.tasks)}"
            )
        self.settings = settings
        self.card = card
        self.tokenizer = tokenizer
        self._embed = embed
        self.max_tokens = min(card.max_tokens, settings.max_tokens or card.max_tokens)
        self.admission = AdmissionControl(settings.max_inflight_tokens,
                                          settings.max_inflight_requests)

    async def create_embeddings(self, request: EmbeddingRequest) -> dict[str, Any]:
        """Answer one embeddings request with the OpenAI response body."""
        task, task_id = self._task(request.task)
        self._check_dimensions(request.dimensions, self.card.hidden_size)
        sequences = await self._token_sequences(request, task)
        tokens = sum(len(s) for s in sequences)
        if tokens > self.settings.max_request_tokens:
            raise invalid(
                f"request has {tokens} tokens, more than the limit of "
                f"{self.settings.max_request_tokens} per request; split it",
                param="input",
                code="request_too_large",
            )
        budget = self.settings.max_batch_tokens
        batches = [
            TokenBatch.from_lists(task_id, sequences[r.start : r.stop], budget)
            for r in split_by_tokens(sequences, budget)
        ]
        with self.admission.admit(tokens):
            parts = await self._embed_in_time(batches)
        vectors = parts[0] if len(parts) == 1 else np.concatenate(parts)
        self._check_dimensions(request.dimensions, vectors.shape[1])
        vectors = finish(vectors, request.dimensions, request.normalized)
        return {
            "object": "list",
            "data": embedding_items(vectors, request.encoding_format),
            "model": self.settings.served_model_name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    async def _embed_in_time(self, batches: list[TokenBatch]) -> list[np.ndarray]:
        try:
            return await asyncio.wait_for(self._embed(batches), self.settings.request_timeout_s)
        except asyncio.TimeoutError:
            raise APIError(
                f"the encoders did not answer within {self.settings.request_timeout_s:g} s",
                status=504, type="server_error", code="timeout",
                headers={"Retry-After": str(self.admission.retry_after_s())},
            ) from None

    def models(self) -> dict[str, Any]:
        """``GET /v1/models`` in the OpenAI list shape, with the model's facts added."""
        entry = {
            "id": self.settings.served_model_name,
            "object": "model",
            "created": 0,
            "owned_by": "self-hosted",
            "tasks": list(self.card.tasks),
            "default_task": self.settings.default_task if self.card.tasks else None,
            "dimensions": self.card.hidden_size,
            "matryoshka_dimensions": list(self.card.matryoshka_dims),
            "max_tokens": self.max_tokens,
        }
        return {"object": "list", "data": [entry]}

    def _task(self, task: str | None) -> tuple[str | None, int | None]:
        if not self.card.tasks:
            if task is not None:
                raise invalid("this model has no tasks; omit 'task'", param="task")
            return None, None
        task = self.settings.default_task if task is None else task
        if task not in self.card.tasks:
            raise invalid(
                f"unknown task {task!r}; this model's tasks are {list(self.card.tasks)}",
                param="task",
            )
        return task, self.card.task_id(task)

    @staticmethod
    def _check_dimensions(dimensions: int | None, width: int | None) -> None:
        if dimensions is not None and width is not None and dimensions > width:
            raise invalid(
                f"'dimensions' is {dimensions}, more than the model's width of {width}",
                param="dimensions",
            )

    async def _token_sequences(self, request: EmbeddingRequest, task: str | None) -> list:
        inputs = request.input
        if isinstance(inputs, str) or (inputs and isinstance(inputs[0], int)):
            inputs = [inputs]
        if not inputs:
            raise invalid("'input' must not be empty", param="input")
        if len(inputs) > self.settings.max_inputs:
            raise invalid(
                f"'input' has {len(inputs)} items, more than the limit of "
                f"{self.settings.max_inputs}",
                param="input",
            )
        limit = self.max_tokens
        if request.max_length is not None:
            floor = self.tokenizer.special_tokens + 1
            if request.max_length < floor:
                raise invalid(f"'max_length' must be at least {floor}", param="max_length")
            limit = min(limit, request.max_length)
        truncate = request.truncate if request.truncate is not None else (
            request.max_length is not None
        )
        if not isinstance(inputs[0], str):
            return self.tokenizer.check_ids(inputs, limit, truncate)
        return await self._tokenize(inputs, self.card.instruction(task), limit, truncate)

    async def _tokenize(
        self, texts: Sequence[str], prefix: str, limit: int, truncate: bool
    ) -> list[list[int]]:
        for index, text in enumerate(texts):
            if not text:
                raise invalid(f"input[{index}] is an empty string", param="input")
        if prefix:
            texts = [prefix + text for text in texts]
        if sum(len(t) for t in texts) <= _INLINE_TOKENIZE_CHARS:
            return self.tokenizer.encode(texts, limit, truncate)
        return await asyncio.to_thread(self.tokenizer.encode, texts, limit, truncate)


def local_embedder(pipeline: EmbeddingPipeline) -> Embedder:
    """An ``Embedder`` that runs the pipeline in this process (tests, benchmarks, no Ray)."""

    async def embed(batches: list[TokenBatch]) -> list[np.ndarray]:
        return raise_failures(await asyncio.to_thread(pipeline.embed, batches))

    return embed
