"""The ingress logic as a plain class: request in, OpenAI response out, no Ray or HTTP here.

It is given an ``embed`` coroutine that turns parcels into pooled vectors: in Ray that calls
encoder replicas through a deployment handle, elsewhere an in-process scheduler.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from encoder.errors import EmbeddingError, ErrorKind, invalid, raise_failures
from encoder.ingress.admission import AdmissionControl, Ticket, estimate_tokens
from encoder.ingress.late_chunking import combine_pieces, plan_late_chunks
from encoder.ingress.output import embedding_items
from encoder.ingress.schemas import EmbeddingRequest, TokenizeRequest, parse_embedding_request
from encoder.ingress.timeouts import RunRate, run_flops
from encoder.ingress.tokenize import TextTokenizer
from encoder.metrics import IngressMetrics
from encoder.model.card import ModelCard
from encoder.model.files import resolve_model
from encoder.parcels import Parcel, request_parcels
from encoder.pooling import finish
from encoder.settings import ServiceSettings

Embedder = Callable[[list[Parcel]], Awaitable[list[np.ndarray | EmbeddingError]]]
T = TypeVar("T")

# Below this many characters tokenizing inline is cheaper than a hop to a worker thread.
_INLINE_TOKENIZE_CHARS = 4096


def check_dimensions(dimensions: int | None, width: int | None) -> None:
    """A 400 if ``dimensions`` asks for more than the model's ``width``."""
    if dimensions is not None and width is not None and dimensions > width:
        raise invalid(f"'dimensions' is {dimensions}, more than the model's width of {width}",
                      param="dimensions")


class EmbeddingsService:
    """Validates and tokenizes requests, sends parcels to ``embed``, builds responses."""

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
        self.max_tokens = settings.input_token_limit(card.max_tokens)
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
        check_dimensions(request.dimensions, self.card.hidden_size)
        if request.late_chunking:
            vectors, tokens = await self._late_chunk_vectors(request, task, task_id, ticket)
        else:
            vectors, tokens = await self._vectors(request, task, task_id, ticket)
        check_dimensions(request.dimensions, vectors.shape[1])
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
        tokens = self._hold(ticket, sum(len(s) for s in sequences))
        scheduler = self.settings.scheduler
        parcels = request_parcels(task_id, sequences, scheduler.sort_window_tokens,
                                  alone_above=scheduler.max_run_tokens)
        parts = await self._embed_in_time(parcels)
        return (parts[0] if len(parts) == 1 else np.concatenate(parts)), tokens

    async def _late_chunk_vectors(self, request: EmbeddingRequest, task: str | None,
                                  task_id: int | None,
                                  ticket: Ticket | None) -> tuple[np.ndarray, int]:
        chunks = self._inputs(request.input, "input")
        if not isinstance(chunks[0], str):
            raise invalid("late chunking needs text chunks, not token ids",
                          param="late_chunking")
        _check_texts(chunks)
        chars = sum(len(c) for c in chunks) + len(chunks) - 1  # joined with single spaces
        if chars > self.settings.max_request_tokens:
            # Tokenizing a huge document only to refuse it would hold a core for seconds.
            floor = await asyncio.to_thread(self.tokenizer.min_tokens, chunks)
            self._check_request_tokens(floor, at_least=True)
        plan = await _off_loop(chars, plan_late_chunks, self.tokenizer, chunks,
                               self.card.instruction(task), self._token_limit(request),
                               self.settings.late_chunking_overlap)
        self._hold(ticket, sum(len(w) for w in plan.windows))
        parcels = [Parcel.from_lists(task_id, [w], spans=[s])
                   for w, s in zip(plan.windows, plan.spans, strict=True)]
        parts = await self._embed_in_time(parcels)
        return combine_pieces(plan, np.concatenate(parts)), plan.tokens

    def _hold(self, ticket: Ticket | None, tokens: int) -> int:
        """The request's exact tokens, checked against the per-request limit and held."""
        self._check_request_tokens(tokens)
        if ticket is not None:
            ticket.hold(tokens)
        return tokens

    def _check_request_tokens(self, tokens: int, at_least: bool = False) -> None:
        if tokens > self.settings.max_request_tokens:
            raise invalid(
                f"request has {'at least ' if at_least else ''}{tokens} tokens, more than the "
                f"limit of {self.settings.max_request_tokens} per request; split it",
                param="input",
                code="request_too_large",
            )

    async def _embed_in_time(self, parcels: list[Parcel]) -> list[np.ndarray]:
        """The parcels' vectors, given ``request_timeout_s`` to wait plus the time their own
        arithmetic takes at the rate measured so far (``timeouts.py``)."""
        flops = sum(run_flops(self.card, int(n)) for p in parcels for n in p.lengths)
        timeout = self.settings.request_timeout_s + self.rate.seconds(flops)
        started = time.perf_counter()
        try:
            results = await asyncio.wait_for(self._embed(parcels), timeout)
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

    def _inputs(self, inputs: Any, param: str) -> list:
        """A request's inputs as a list: not empty, at most ``max_inputs``."""
        if isinstance(inputs, str) or (inputs and isinstance(inputs[0], int)):
            inputs = [inputs]
        if not inputs:
            raise invalid(f"'{param}' must not be empty", param=param)
        if len(inputs) > self.settings.max_inputs:
            raise invalid(f"'{param}' has {len(inputs)} items, more than the limit of "
                          f"{self.settings.max_inputs}", param=param)
        return inputs

    def _token_limit(self, request: EmbeddingRequest) -> int:
        if request.max_length is None:
            return self.max_tokens
        floor = self.tokenizer.special_tokens + 1
        if request.max_length < floor:
            raise invalid(f"'max_length' must be at least {floor}", param="max_length")
        return min(self.max_tokens, request.max_length)

    async def _token_sequences(self, request: EmbeddingRequest, task: str | None) -> list:
        inputs = self._inputs(request.input, "input")
        limit = self._token_limit(request)
        truncate = request.truncate if request.truncate is not None else (
            request.max_length is not None
        )
        if not isinstance(inputs[0], str):
            return self.tokenizer.check_ids(inputs, limit, truncate)
        _check_texts(inputs)
        prefix = self.card.instruction(task)
        texts = [prefix + text for text in inputs] if prefix else inputs
        return await _off_loop(sum(len(t) for t in texts), self.tokenizer.encode, texts,
                               limit, truncate)

    async def tokenize(self, request: TokenizeRequest) -> list[list[dict]]:
        """``POST /tokenize``: each input's tokens, with the task's instruction if asked."""
        texts = self._inputs(request.inputs, "inputs")
        task, _ = self._task(request.task) if request.task is not None else (None, None)
        prefix = self.card.instruction(task) if task else ""
        return await _off_loop(sum(len(t) for t in texts), self.tokenizer.tokens, texts,
                               request.add_special_tokens, prefix)


def _check_texts(texts: Sequence[str]) -> None:
    for index, text in enumerate(texts):
        if not text:
            raise invalid(f"input[{index}] is an empty string", param="input")


async def _off_loop(chars: int, work: Callable[..., T], *args: Any) -> T:
    """``work(*args)``: inline for up to ``_INLINE_TOKENIZE_CHARS`` characters of text, else
    on a worker thread so a big request does not hold the event loop."""
    if chars <= _INLINE_TOKENIZE_CHARS:
        return work(*args)
    return await asyncio.to_thread(work, *args)
