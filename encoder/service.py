"""The ingress logic as a plain class: request in, OpenAI response out, no Ray or HTTP here.

It is given an ``embed`` coroutine that turns token batches into pooled vectors: in Ray that
calls encoder replicas through a deployment handle, elsewhere an in-process scheduler.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import numpy as np

from encoder.admission import AdmissionControl, Ticket, estimate_tokens
from encoder.api import EmbeddingRequest, TokenizeRequest, parse_embedding_request
from encoder.batching import TokenBatch, request_batches
from encoder.errors import EmbeddingError, ErrorKind, invalid, raise_failures
from encoder.late_chunking import combine_pieces, plan_late_chunks
from encoder.metrics import IngressMetrics
from encoder.model.card import ModelCard
from encoder.model.files import resolve_model
from encoder.output import embedding_items
from encoder.pooling import finish
from encoder.run_cost import RunRate, run_flops
from encoder.settings import ServiceSettings
from encoder.tokenize import TextTokenizer

Embedder = Callable[[list[TokenBatch]], Awaitable[list[np.ndarray | EmbeddingError]]]

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
        metrics: IngressMetrics | None = None,
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
        self.metrics = metrics or IngressMetrics()
        self.max_tokens = min(card.max_tokens, settings.max_tokens or card.max_tokens)
        self.admission = AdmissionControl(settings.max_inflight_tokens,
                                          settings.max_inflight_requests)
        self.rate = RunRate()

    @classmethod
    def for_model(cls, settings: ServiceSettings, embed: Embedder) -> EmbeddingsService:
        """The service for the model ``settings`` names (its card and tokenizer only)."""
        files = resolve_model(settings.model, settings.onnx_file, settings.revision,
                              with_onnx=False)
        return cls(settings, ModelCard.from_folder(files.root), TextTokenizer(files.root), embed)

    async def create_embeddings(self, body: bytes) -> dict[str, Any]:
        """Answer one embeddings request (its JSON body) with the OpenAI response body.

        Admission comes first, on an estimate from the body's size, so an overloaded
        service refuses before parsing or tokenizing; the exact token count then holds the
        budget.
        """
        with self.admission.admit(estimate_tokens(len(body))) as ticket:
            return await self.embeddings(parse_embedding_request(body), ticket)

    async def embeddings(self, request: EmbeddingRequest,
                         ticket: Ticket | None = None) -> dict[str, Any]:
        """Answer a parsed request; ``ticket`` is its admission (None: not admitted here)."""
        task, task_id = self._task(request.task)
        values, wire = request.output_format()
        self._check_dimensions(request.dimensions, self.card.hidden_size)
        if request.late_chunking:
            vectors, tokens = await self._late_chunk_vectors(request, task, task_id, ticket)
        else:
            vectors, tokens = await self._vectors(request, task, task_id, ticket)
        self._check_dimensions(request.dimensions, vectors.shape[1])
        vectors = finish(vectors, request.dimensions, request.normalized)
        self.metrics.embedded(task, len(vectors), tokens)
        return {
            "object": "list",
            "data": embedding_items(vectors, wire, values),
            "model": self.settings.served_model_name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    async def _vectors(self, request: EmbeddingRequest, task: str | None, task_id: int | None,
                       ticket: Ticket | None) -> tuple[np.ndarray, int]:
        sequences = await self._token_sequences(request, task)
        tokens = self._check_request_tokens(sum(len(s) for s in sequences))
        if ticket is not None:
            ticket.hold(tokens)
        batching = self.settings.batching
        batches = request_batches(task_id, sequences, batching.sort_window_tokens,
                                  alone_above=batching.max_batch_tokens)
        parts = await self._embed_in_time(batches)
        return (parts[0] if len(parts) == 1 else np.concatenate(parts)), tokens

    async def _late_chunk_vectors(self, request: EmbeddingRequest, task: str | None,
                                  task_id: int | None,
                                  ticket: Ticket | None) -> tuple[np.ndarray, int]:
        chunks = self._inputs(request)
        if not isinstance(chunks[0], str):
            raise invalid("late chunking needs text chunks, not token ids",
                          param="late_chunking")
        self._check_texts(chunks)
        window = self._token_limit(request)
        chars = sum(len(c) for c in chunks) + len(chunks) - 1  # joined with single spaces
        if chars > self.settings.max_request_tokens:
            # Tokenizing a huge document only to refuse it would hold a core for seconds.
            floor = await asyncio.to_thread(self.tokenizer.min_tokens, chunks)
            self._check_request_tokens(floor, at_least=True)
        plan_args = (self.tokenizer, chunks, self.card.instruction(task), window,
                     self.settings.late_chunking_overlap)
        if chars <= _INLINE_TOKENIZE_CHARS:
            plan = plan_late_chunks(*plan_args)
        else:
            plan = await asyncio.to_thread(plan_late_chunks, *plan_args)
        tokens = self._check_request_tokens(sum(len(w) for w in plan.windows))
        if ticket is not None:
            ticket.hold(tokens)
        batches = [TokenBatch.from_lists(task_id, [w], spans=[s])
                   for w, s in zip(plan.windows, plan.spans, strict=True)]
        parts = await self._embed_in_time(batches)
        return combine_pieces(plan, np.concatenate(parts)), plan.tokens

    def _check_request_tokens(self, tokens: int, at_least: bool = False) -> int:
        if tokens > self.settings.max_request_tokens:
            raise invalid(
                f"request has {'at least ' if at_least else ''}{tokens} tokens, more than the "
                f"limit of {self.settings.max_request_tokens} per request; split it",
                param="input",
                code="request_too_large",
            )
        return tokens

    async def _embed_in_time(self, batches: list[TokenBatch]) -> list[np.ndarray]:
        """The batches' vectors, given ``request_timeout_s`` to wait plus the time their own
        arithmetic takes at the rate measured so far (an 8192-token document needs minutes
        on a small CPU)."""
        flops = sum(run_flops(self.card, int(n)) for b in batches for n in b.lengths)
        timeout = self.settings.request_timeout_s + self.rate.seconds(flops)
        started = time.perf_counter()
        try:
            results = await asyncio.wait_for(self._embed(batches), timeout)
        except asyncio.TimeoutError:
            raise EmbeddingError(
                ErrorKind.TIMEOUT, f"the encoders did not answer within {timeout:.0f} s",
                code="timeout", retry_after_s=self.admission.retry_after_s()) from None
        results = raise_failures(results)
        self.rate.observe(flops, time.perf_counter() - started)
        return results

    def models(self) -> dict[str, Any]:
        """``GET /v1/models`` in the OpenAI list shape, with the model's facts added."""
        return {"object": "list", "data": [self._model_entry()]}

    def model(self, model_id: str) -> dict[str, Any]:
        """``GET /v1/models/{model_id}``: the served model's entry, or OpenAI's 404."""
        if model_id != self.settings.served_model_name:
            raise EmbeddingError(ErrorKind.NOT_FOUND, f"The model '{model_id}' does not exist; "
                                 f"this server serves '{self.settings.served_model_name}'",
                                 param="model", code="model_not_found")
        return self._model_entry()

    def _model_entry(self) -> dict[str, Any]:
        return {
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

    def _task(self, task: str | None) -> tuple[str | None, int | None]:
        return self.card.resolve_task(task, self.settings.default_task)

    @staticmethod
    def _check_dimensions(dimensions: int | None, width: int | None) -> None:
        if dimensions is not None and width is not None and dimensions > width:
            raise invalid(
                f"'dimensions' is {dimensions}, more than the model's width of {width}",
                param="dimensions",
            )

    def _inputs(self, request: EmbeddingRequest) -> list:
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
        return inputs

    def _token_limit(self, request: EmbeddingRequest) -> int:
        if request.max_length is None:
            return self.max_tokens
        floor = self.tokenizer.special_tokens + 1
        if request.max_length < floor:
            raise invalid(f"'max_length' must be at least {floor}", param="max_length")
        return min(self.max_tokens, request.max_length)

    async def _token_sequences(self, request: EmbeddingRequest, task: str | None) -> list:
        inputs = self._inputs(request)
        limit = self._token_limit(request)
        truncate = request.truncate if request.truncate is not None else (
            request.max_length is not None
        )
        if not isinstance(inputs[0], str):
            return self.tokenizer.check_ids(inputs, limit, truncate)
        return await self._tokenize(inputs, self.card.instruction(task), limit, truncate)

    @staticmethod
    def _check_texts(texts: Sequence[str]) -> None:
        for index, text in enumerate(texts):
            if not text:
                raise invalid(f"input[{index}] is an empty string", param="input")

    async def _tokenize(
        self, texts: Sequence[str], prefix: str, limit: int, truncate: bool
    ) -> list[list[int]]:
        self._check_texts(texts)
        if prefix:
            texts = [prefix + text for text in texts]
        if sum(len(t) for t in texts) <= _INLINE_TOKENIZE_CHARS:
            return self.tokenizer.encode(texts, limit, truncate)
        return await asyncio.to_thread(self.tokenizer.encode, texts, limit, truncate)

    async def tokenize(self, request: TokenizeRequest) -> list[list[dict]]:
        """``POST /tokenize``: each input's tokens, with the task's instruction if asked."""
        texts = [request.inputs] if isinstance(request.inputs, str) else request.inputs
        if not texts:
            raise invalid("'inputs' must not be empty", param="inputs")
        if len(texts) > self.settings.max_inputs:
            raise invalid(f"'inputs' has {len(texts)} items, more than the limit of "
                          f"{self.settings.max_inputs}", param="inputs")
        task, _ = self._task(request.task) if request.task is not None else (None, None)
        prefix = self.card.instruction(task) if task else ""
        args = (texts, request.add_special_tokens, prefix)
        if sum(len(t) for t in texts) <= _INLINE_TOKENIZE_CHARS:
            return self.tokenizer.tokens(*args)
        return await asyncio.to_thread(self.tokenizer.tokens, *args)
