"""The replica's memory: a run's activations grow linearly with flash attention and
quadratically without, and the budget admits what fits."""

from encoder.model.card import ModelCard
from encoder.scheduling.memory import MemoryBudget, activation_bytes, memory_limit, resident_bytes

JINA_V3 = ModelCard(hidden_size=1024, attention_heads=16, layers=24, intermediate_size=4096,
                    max_tokens=8194)


def test_flash_memory_is_linear_and_padded_attention_quadratic():
    flash = [activation_bytes(JINA_V3, 1, n, flash=True) for n in (2048, 4096, 8192)]
    assert flash[1] == 2 * flash[0] and flash[2] == 2 * flash[1]
    # Measured on the real graph: +1.42 GB peak RSS from 512 to 8192 tokens; the estimate
    # errs large, by little.
    assert 1.42e9 < flash[2] - activation_bytes(JINA_V3, 1, 512, flash=True) < 1.7e9
    masked = activation_bytes(JINA_V3, 1, 8192, flash=False)
    assert 8e9 < masked - flash[2] < 9e9  # [16, 8192, 8192] float32 scores and softmax


def test_the_budget_admits_what_fits_and_names_the_limit():
    run = activation_bytes(JINA_V3, 1, 4096, flash=True)
    budget = MemoryBudget(JINA_V3, limit=3 * 10**9 + 10**8 + run, held=3 * 10**9,
                          reserve=10**8, flash=True)
    assert budget.fits(4096) and not budget.fits(4097)
    assert budget.longest(8194) == 4096 and budget.longest(1000) == 1000
    refusal = budget.refusal(8194, 8194)
    assert refusal.status == 413 and "at most 4096 tokens per input" in refusal.message
    assert MemoryBudget(JINA_V3, 10, 20, 0, True).longest(8194) == 0


def test_memory_limit_prefers_what_was_declared():
    assert memory_limit(3.4e9) == 3_400_000_000
    assert memory_limit(None) >= resident_bytes() > 0
