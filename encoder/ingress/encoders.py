"""One model's encoders as the ingress sees them: where its parcels go, which requests are
admitted, and how long they may wait.

Every model has its own: a burst on one model gets that model's 429s, and its slow runs
stretch only its own timeouts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from encoder.errors import EmbeddingError, ErrorKind, invalid, raise_failures
from encoder.ingress.admission import AdmissionControl, Ticket, estimate_tokens
from encoder.ingress.timeouts import RunRate, run_flops
from encoder.ingress.tokenize import TextTokenizer
from encoder.metrics import IngressMetrics
from encoder.model.card import ModelCard
from encoder.parcels import Parcel
from encoder.settings import ModelSettings, ServiceSettings

Embedder = Callable[[list[Parcel]], Awaitable[list[np.ndarray | EmbeddingError]]]


class Encoders:
    """A model's encoder replicas: ``embed`` (in Ray, calls through a deployment handle;
    elsewhere an in-process scheduler), its admission control and its run rate."""

    def __init__(self, settings: ServiceSettings, card: ModelCard, embed: Embedder) -> None:
        self.settings = settings
        self.card = card
        self._embed = embed
        self.admission = AdmissionControl(settings.max_inflight_tokens,
                                          settings.max_inflight_requests)
        self.rate = RunRate()

    @contextmanager
    def admit(self, body_bytes: int) -> Iterator[Ticket]:
        """Admission on an estimate from the body's size, so an overloaded model refuses
        before tokenizing (the body is parsed first: the model it names picks the budget);
        the ticket then holds the exact count (``hold``)."""
        with self.admission.admit(estimate_tokens(body_bytes)) as ticket:
            yield ticket

    def hold(self, ticket: Ticket | None, tokens: int) -> int:
        """A request's exact tokens, checked against the per-request limit and held."""
        self.check_request_tokens(tokens)
        if ticket is not None:
            ticket.hold(tokens)
        return tokens

    def check_request_tokens(self, tokens: int, at_least: bool = False) -> None:
        """A 400 for a request over ``max_request_tokens`` (``at_least``: a lower bound)."""
        if tokens > self.settings.max_request_tokens:
            raise invalid(
                f"request has {'at least ' if at_least else ''}{tokens} tokens, more than the "
                f"limit of {self.settings.max_request_tokens} per request; split it",
                param="input",
                code="request_too_large",
            )

    async def run(self, parcels: list[Parcel]) -> list[np.ndarray]:
        """The parcels' results, given ``request_timeout_s`` to wait plus the time their own
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


class ModelService:
    """What each model's service (embeddings, rerank) holds: the settings, the model's card,
    tokenizer and encoders, the ingress metrics, and its token limit per input."""

    def __init__(self, settings: ServiceSettings, model: ModelSettings, card: ModelCard,
                 tokenizer: TextTokenizer, embed: Embedder,
                 metrics: IngressMetrics | None = None) -> None:
        self.settings = settings
        self.model = model
        self.card = card
        self.tokenizer = tokenizer
        self.encoders = Encoders(settings, card, embed)
        self.metrics = metrics or IngressMetrics()
        self.max_tokens = model.input_token_limit(card.max_tokens)

    def check_items(self, items: Sequence, param: str, limit: int | None = None) -> None:
        """A 400 naming ``param`` unless ``items`` is non-empty and at most ``limit`` long
        (default: ``max_inputs``)."""
        limit = self.settings.max_inputs if limit is None else limit
        if not items:
            raise invalid(f"'{param}' must not be empty", param=param)
        if len(items) > limit:
            raise invalid(f"'{param}' has {len(items)} items, more than the limit of {limit}",
                          param=param)
