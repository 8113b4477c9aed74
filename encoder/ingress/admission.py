"""Admission control: bound the work one ingress replica holds, and say when to come back."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager

from encoder.errors import EmbeddingError, ErrorKind

# Bytes of a JSON body per token, for the estimate admission refuses on before tokenizing:
# about what XLM-R gives for Latin text (4-5 characters a token) and for CJK (3 bytes a
# character, 1-2 characters a token).
BYTES_PER_TOKEN = 4


def estimate_tokens(body_bytes: int) -> int:
    """A request's tokens guessed from its body's size (at least 1)."""
    return max(1, body_bytes // BYTES_PER_TOKEN)


class Ticket:
    """An admitted request's hold on the budget: its slot, then its exact tokens.

    Nothing is held on the estimate, so a request that fails validation (however big its
    body) never takes budget from the others.
    """

    def __init__(self, control: AdmissionControl) -> None:
        self._control = control
        self.tokens = 0

    def hold(self, tokens: int) -> None:
        """Hold the request's exact token count: a 429 if it does not fit beside the other
        requests in flight."""
        control = self._control
        if control.requests > 1 and control.tokens - self.tokens + tokens > control.max_tokens:
            raise control.refusal()
        control.tokens += tokens - self.tokens
        self.tokens = tokens


class AdmissionControl:
    """Admit a request only while the tokens in flight stay under a budget.

    A burst beyond capacity gets an immediate 429 with ``Retry-After`` instead of waiting in
    an unbounded queue, so the requests already admitted keep a bounded latency. A request
    that arrives when nothing is in flight is always admitted, however large, so one big
    request is never refused forever. ``Retry-After`` is the time the work in flight needs
    at the throughput measured so far.
    """

    def __init__(self, max_tokens: int, max_requests: int) -> None:
        self.max_tokens = max_tokens
        self.max_requests = max_requests
        self.tokens = 0
        self.requests = 0
        self._tokens_per_s = 0.0  # exponentially weighted, 0 until measured

    @contextmanager
    def admit(self, tokens: int) -> Iterator[Ticket]:
        """A request slot for the block, or a 429 at once if ``tokens`` (an estimate is
        enough) would not fit; the ticket then holds the exact count."""
        if self.requests and (self.tokens + tokens > self.max_tokens
                              or self.requests >= self.max_requests):
            raise self.refusal()
        ticket = Ticket(self)
        self.requests += 1
        start = time.perf_counter()
        try:
            yield ticket
            self._observe(ticket.tokens, time.perf_counter() - start)
        finally:
            self.tokens -= ticket.tokens
            self.requests -= 1

    def refusal(self) -> EmbeddingError:
        """The 429 for a request that does not fit now."""
        return EmbeddingError(
            ErrorKind.OVERLOADED,
            f"the service is at capacity ({self.tokens} tokens in {self.requests} requests "
            "in flight); retry after the time in the Retry-After header",
            code="overloaded", retry_after_s=self.retry_after_s())

    def retry_after_s(self) -> int:
        """Whole seconds the tokens in flight take at the measured rate (1 to 60)."""
        if self._tokens_per_s <= 0:
            return 1
        return max(1, min(60, math.ceil(self.tokens / self._tokens_per_s)))

    def _observe(self, tokens: int, seconds: float) -> None:
        # Rate at which this request's tokens were served while sharing the encoders with
        # the others in flight: a lower bound of the service's throughput.
        rate = tokens * max(self.requests, 1) / max(seconds, 1e-6)
        self._tokens_per_s = rate if not self._tokens_per_s else (
            0.8 * self._tokens_per_s + 0.2 * rate)
