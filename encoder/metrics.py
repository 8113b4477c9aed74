"""Prometheus metrics of the service, recorded through ``ray.serve.metrics``.

Ray adds the ``deployment``, ``replica`` and ``application`` tags and exports every metric
with a ``ray_`` prefix on each node's metrics agent (see the README's operations section).
Outside a Ray replica (unit tests, benchmarks) the recorders do nothing, so the core stays
importable and testable without Ray.
"""

from __future__ import annotations

from typing import Any

# Boundaries chosen for CPU inference: ~1 ms (tiny batch) to ~1 min (8192-token windows).
_MS_BOUNDARIES = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000]
_SIZE_BOUNDARIES = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
_TOKEN_BOUNDARIES = [16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384]


class _NoMetric:
    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        pass

    def observe(self, value: float, tags: dict[str, str] | None = None) -> None:
        pass


def _serve_metrics() -> Any | None:
    try:
        from ray import serve
        from ray.serve import metrics

        serve.get_replica_context()
    except Exception:  # no Ray, or not inside a replica
        return None
    return metrics


class IngressMetrics:
    """What clients asked for, by model: inputs and tokens by task (rerank: documents and
    pair tokens), errors by status and code."""

    def __init__(self) -> None:
        m = _serve_metrics()
        if m is None:
            self.inputs = self.tokens = self.errors = _NoMetric()
            return
        self.inputs = m.Counter("embeddings_inputs", "Inputs embedded (texts or chunks), or "
                                "documents reranked.", tag_keys=("model", "task"))
        self.tokens = m.Counter("embeddings_tokens", "Tokens run, special tokens, "
                                "instructions and rerank queries included.",
                                tag_keys=("model", "task"))
        self.errors = m.Counter("embeddings_errors", "Requests answered with an error.",
                                tag_keys=("model", "status", "code"))

    def embedded(self, model: str, task: str | None, inputs: int, tokens: int) -> None:
        """Record one answered request (``task``: "rerank" for a rerank request)."""
        tags = {"model": model, "task": task or "none"}
        self.inputs.inc(inputs, tags)
        self.tokens.inc(tokens, tags)

    def failed(self, status: int, code: str | None, model: str | None = None) -> None:
        """Record one error response (``model``: None before a model was chosen)."""
        self.errors.inc(1, {"model": model or "none", "status": str(status),
                            "code": code or "none"})


class EncoderMetrics:
    """How a model's encoder runs: sequences and padded tokens per run, queue wait, run
    time; tagged with the model."""

    def __init__(self, model: str = "none") -> None:
        self.tags = {"model": model}
        m = _serve_metrics()
        if m is None:
            self.sequences = self.tokens = self.queue_wait = self.duration = _NoMetric()
            return
        self.sequences = m.Histogram("embeddings_run_sequences", "Sequences per ONNX run.",
                                     boundaries=_SIZE_BOUNDARIES, tag_keys=("model",))
        self.tokens = m.Histogram("embeddings_run_tokens", "Padded tokens (longest x "
                                  "sequences) per ONNX run.", boundaries=_TOKEN_BOUNDARIES,
                                  tag_keys=("model",))
        self.queue_wait = m.Histogram("embeddings_queue_wait_ms", "Time a parcel waits in the "
                                      "encoder replica before its ONNX run starts.",
                                      boundaries=_MS_BOUNDARIES, tag_keys=("model",))
        self.duration = m.Histogram("embeddings_run_ms", "Duration of one ONNX run.",
                                    boundaries=_MS_BOUNDARIES, tag_keys=("model",))

    def run(self, sequences: int, padded_tokens: int, seconds: float) -> None:
        """Record one ONNX run (called by the scheduler's executor)."""
        self.sequences.observe(sequences, self.tags)
        self.tokens.observe(padded_tokens, self.tags)
        self.duration.observe(seconds * 1000.0, self.tags)

    def waited(self, seconds: float) -> None:
        """Record how long a parcel waited for its run."""
        self.queue_wait.observe(seconds * 1000.0, self.tags)
