"""How long a request may wait for the encoders: ``request_timeout_s`` plus the time its own
arithmetic takes at the rate the encoders delivered to earlier requests (``RunRate``).

An 8192-token jina-v3 document needs minutes on a small CPU; a query needs milliseconds.
"""

from __future__ import annotations

from encoder.model.card import ModelCard

# Before the service has timed a request: arithmetic per second of a slow core, so a first
# long document is given too much time rather than too little.
COLD_FLOPS_PER_S = 2e10


def run_flops(card: ModelCard, length: int) -> float:
    """Floating-point operations to encode one sequence of ``length`` tokens: the weight
    matrices (q, k, v, output, two feed-forward) and attention's two ``n x n`` products."""
    hidden = card.hidden_size or 768
    ffn = card.intermediate_size or 4 * hidden
    layers = card.layers or 12
    per_layer = 2 * length * (4 * hidden * hidden + 2 * hidden * ffn) + 4 * length**2 * hidden
    return float(layers * per_layer)


class RunRate:
    """Arithmetic per second the encoders delivered to requests, for their timeouts.

    A request's rate (its FLOPs over its wall time, queueing included) is a lower bound of
    the encoders', so timeouts derived from it err long.
    """

    def __init__(self) -> None:
        self.flops_per_s = 0.0

    def seconds(self, flops: float) -> float:
        """Estimated seconds for ``flops`` of work."""
        return flops / (self.flops_per_s or COLD_FLOPS_PER_S)

    def observe(self, flops: float, seconds: float) -> None:
        """Record a request's FLOPs and how long it took."""
        rate = flops / max(seconds, 1e-6)
        self.flops_per_s = rate if not self.flops_per_s else (
            0.8 * self.flops_per_s + 0.2 * rate)
