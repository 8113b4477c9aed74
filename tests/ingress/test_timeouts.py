"""Timeouts: a request's FLOPs from the model's config, and a rate that errs long until
measured."""

from encoder.ingress.timeouts import COLD_FLOPS_PER_S, RunRate, run_flops
from encoder.model.card import ModelCard

JINA_V3 = ModelCard(hidden_size=1024, attention_heads=16, layers=24, intermediate_size=4096,
                    max_tokens=8194)


def test_flops_count_weights_and_attention():
    # 24 layers x 2 x 8192 x (4 x 1024² + 2 x 1024 x 4096) + 24 x 4 x 8192² x 1024
    assert run_flops(JINA_V3, 8192) == 24 * (2 * 8192 * 12 * 2**20 + 4 * 8192**2 * 1024)
    assert run_flops(JINA_V3, 8192) > 2 * run_flops(JINA_V3, 4096)


def test_timeouts_err_long_until_a_rate_is_measured():
    rate = RunRate()
    assert rate.seconds(4e10) == 4e10 / COLD_FLOPS_PER_S
    rate.observe(1e12, 10.0)
    assert rate.seconds(1e12) == 10.0
    rate.observe(1e12, 5.0)  # faster now: the estimate follows, smoothed
    assert 5.0 < rate.seconds(1e12) < 10.0
