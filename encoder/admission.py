"""Admission control: bound the work one ingress replica holds, and say when to come back."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager

from encoder.errors import APIError


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
    def admit(self, tokens: int) -> Iterator[None]:
        """Hold ``tokens`` of the budget for the duration of the block, or raise a 429."""
        if self.requests and (self.tokens + tokens > self.max_tokens
                              or self.requests >= self.max_requests):
            raise APIError(
                f"the service is at capacity ({self.tokens} tokens in {self.requests} requests "
                "in flight); retry after the time in the Retry-After header",
                status=429, type="rate_limit_error", code="overloaded",
                headers={"Retry-After": str(self.retry_after_s())},
            )
        self.tokens += tokens
        self.requests += 1
        start = time.perf_counter()
        try:
            yield
            self._observe(tokens, time.perf_counter() - start)
        finally:
            self.tokens -= tokens
            self.requests -= 1

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
