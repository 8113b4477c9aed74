"""encoder/metrics.py outside Ray: the service's metrics are no-ops, never errors."""

from encoder.metrics import EncoderMetrics, IngressMetrics


def test_metrics_are_silent_outside_ray():
    IngressMetrics().embedded("text-matching", 3, 30)
    IngressMetrics().failed(400, None)
    EncoderMetrics().run(2, 64, 0.01)
    EncoderMetrics().waited(0.01)
