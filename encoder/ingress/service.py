"""The ingress logic as a plain class: request in, OpenAI response out, no Ray or HTTP here.

It is given an ``embed`` coroutine that turns parcels into pooled vectors: in Ray that calls
encoder replicas through a deployment handle, elsewhere an in-process scheduler.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import numpy as np

from encoder.errors import invalid
from encoder.ingress.admission import Ticket
from encoder.ingress.encoders import Embedder, ModelService
from encoder.ingress.late_chunking import combine_pieces, plan_late_chunks
from encoder.ingress.output import embedding_items
from encoder.ingress.schemas import EmbeddingRequest, TokenizeRequest, parse_embedding_request
from encoder.ingress.tokenize import TextTokenizer, off_loop
from encoder.metrics import IngressMetrics
from encoder.model.card import ModelCard
from encoder.model.files import model_root
from encoder.parcels import Parcel, request_parcels
from encoder.pooling import finish
from encoder.settings import ModelSettings, ServiceSettings


def check_dimensions(dimensions: int | None, width: int | None) -> None:
    """A 400 if ``dimensions`` asks for more than the model's ``width``."""
    if dimensions is not None and width is not None and dimensions > width:
        raise invalid(f"'dimensions' is {dimensions}, more than the model's width of {width}",
                      param="dimensions")


class EmbeddingsService(ModelService):
    """Validates and tokenizes embeddings requests for one model, sends their parcels to its
    encoders, builds responses.

    model: the model's own settings (None: the main model's, ``settings``'s own fields).
    """

    def __init__(
        self,
        settings: ServiceSettings,
        card: ModelCard,
        tokenizer: TextTokenizer,
        embed: Embedder,
        metrics: IngressMetrics | None = None,
        model: ModelSettings | None = None,
    ) -> None:
        model = model or settings.main_model()
        if card.tasks and model.default_task not in card.tasks:
            raise ValueError(
                f"default_task {model.default_task!r} is not one of the model's tasks "
                f"{list(card.tasks)}"
            )
        super().__init__(settings, model, card, tokenizer, embed, metrics)

    @classmethod
    def for_model(cls, settings: ServiceSettings, embed: Embedder,
                  model: ModelSettings | None = None,
                  metrics: IngressMetrics | None = None) -> EmbeddingsService:
        """The service for ``model`` (None: the main one), from its card and tokenizer."""
        model = model or settings.main_model()
        root = model_root(model)
        return cls(settings, ModelCard.from_folder(root), TextTokenizer(root), embed,
                   metrics, model)

    async def create_embeddings(self, body: bytes) -> dict[str, Any]:
        """Answer one embeddings request (its JSON body) with the OpenAI response body.

        Admission comes first, on an estimate from the body's size, so an overloaded
        service refuses before parsing or tokenizing; the exact token count then holds the
        budget.
        """
        with self.encoders.admit(len(body)) as ticket:
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
        self.metrics.embedded(self.model.served_model_name, task, len(vectors), tokens)
        return {
            "object": "list",
            "data": embedding_items(vectors, wire, values),
            "model": self.model.served_model_name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    async def unit_vectors(self, texts: list[str], task: str | None,
                           ticket: Ticket | None = None) -> tuple[np.ndarray, int]:
        """L2-normalised vectors of ``texts`` for ``task`` (None: the default), and the
        tokens they took: for services built on embeddings (classify)."""
        task, task_id = self._task(task)
        vectors, tokens = await self._vectors(EmbeddingRequest(input=texts), task, task_id,
                                              ticket)
        return finish(vectors, None, True), tokens

    async def _vectors(self, request: EmbeddingRequest, task: str | None, task_id: int | None,
                       ticket: Ticket | None) -> tuple[np.ndarray, int]:
        sequences = await self._token_sequences(request, task)
        tokens = self.encoders.hold(ticket, sum(len(s) for s in sequences))
        scheduler = self.model.scheduler
        parcels = request_parcels(task_id, sequences, scheduler.sort_window_tokens,
                                  alone_above=scheduler.max_run_tokens)
        parts = await self.encoders.run(parcels)
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
            self.encoders.check_request_tokens(floor, at_least=True)
        plan = await off_loop(chars, plan_late_chunks, self.tokenizer, chunks,
                               self.card.instruction(task), self._token_limit(request),
                               self.settings.late_chunking_overlap)
        self.encoders.hold(ticket, sum(len(w) for w in plan.windows))
        parcels = [Parcel.from_lists(task_id, [w], spans=[s])
                   for w, s in zip(plan.windows, plan.spans, strict=True)]
        parts = await self.encoders.run(parcels)
        return combine_pieces(plan, np.concatenate(parts)), plan.tokens

    def model_entry(self) -> dict[str, Any]:
        """This model's ``/v1/models`` entry: OpenAI's fields and the model's facts."""
        return {
            "id": self.model.served_model_name,
            "object": "model",
            "created": 0,
            "owned_by": "self-hosted",
            "kind": "embeddings",
            "aliases": list(self.model.aliases),
            "tasks": list(self.card.tasks),
            "default_task": self.model.default_task if self.card.tasks else None,
            "dimensions": self.card.hidden_size,
            "matryoshka_dimensions": list(self.card.matryoshka_dims),
            "max_tokens": self.max_tokens,
        }

    def _task(self, task: str | None) -> tuple[str | None, int | None]:
        return self.card.resolve_task(task, self.model.default_task)

    def _inputs(self, inputs: Any, param: str) -> list:
        """A request's inputs as a list: not empty, at most ``max_inputs``."""
        if isinstance(inputs, str) or (inputs and isinstance(inputs[0], int)):
            inputs = [inputs]
        self.check_items(inputs, param)
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
        return await off_loop(sum(len(t) for t in texts), self.tokenizer.encode, texts,
                               limit, truncate)

    async def tokenize(self, request: TokenizeRequest) -> list[list[dict]]:
        """``POST /tokenize``: each input's tokens, with the task's instruction if asked."""
        texts = self._inputs(request.inputs, "inputs")
        task, _ = self._task(request.task) if request.task is not None else (None, None)
        prefix = self.card.instruction(task) if task else ""
        return await off_loop(sum(len(t) for t in texts), self.tokenizer.tokens, texts,
                               request.add_special_tokens, prefix)


def _check_texts(texts: Sequence[str]) -> None:
    for index, text in enumerate(texts):
        if not text:
            raise invalid(f"input[{index}] is an empty string", param="input")
