"""encoder/metrics.py outside Ray: the service's metrics are no-ops, never errors."""

from encoder.metrics import EncoderMetrics, IngressMetrics


def test_metrics_are_silent_outside_ray():
    IngressMetrics().embedded("jina-embeddings-v3", "text-matching", 3, 30)
    IngressMetrics().embedded("a-reranker", "rerank", 10, 300)
    IngressMetrics().failed(400, None)
    IngressMetrics().failed(404, "model_not_found", "a-reranker")
    EncoderMetrics("a-reranker").run(2, 64, 0.01)
    EncoderMetrics().waited(0.01)
