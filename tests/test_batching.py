import numpy as np
import pytest

from encoder.batching import (
    TokenBatch,
    pad,
    plan_even_runs,
    plan_runs,
    request_batches,
    split_by_tokens,
)


def test_token_batch_round_trip():
    sequences = [[0, 5, 2], [0, 2], [0, 7, 8, 9, 2]]
    batch = TokenBatch.from_lists(3, sequences, budget=100)
    assert len(batch) == 3 and batch.tokens == 10 and batch.size == 10
    assert [s.tolist() for s in batch.sequences()] == sequences
    assert TokenBatch.from_lists(None, [[1] * 50], budget=16).size == 16


def test_split_by_tokens_keeps_order_and_budget():
    sequences = [[1] * n for n in (5, 5, 5, 20, 1, 1)]
    ranges = split_by_tokens(sequences, budget=10)
    assert [list(r) for r in ranges] == [[0, 1], [2], [3], [4, 5]]
    assert split_by_tokens([], budget=10) == []


def test_request_batches_split_by_budget_and_count_up_to_the_window():
    sequences = [[1] * n for n in (5, 5, 5, 40)]
    batches = request_batches(2, sequences, budget=10, window=30)
    assert [len(b) for b in batches] == [2, 1, 1]
    assert [b.size for b in batches] == [10, 5, 30]  # the 40-token input takes a window
    assert all(b.task_id == 2 for b in batches)
    assert request_batches(2, sequences, budget=10)[-1].size == 10


def test_plan_runs_sorts_and_respects_padded_budget():
    lengths = np.array([3, 50, 4, 10, 9, 2])
    runs = plan_runs(lengths, budget=20)
    assert sorted(np.concatenate(runs).tolist()) == list(range(6))
    for run in runs:
        assert len(run) == 1 or lengths[run].max() * len(run) <= 20
    assert runs[0].tolist() == [1]  # longer than the budget: alone


def test_even_runs_split_evenly_within_the_budget():
    lengths = np.full(32, 21)
    assert [len(r) for r in plan_runs(lengths, 512)] == [24, 8]
    assert [len(r) for r in plan_even_runs(lengths, 512, 2)] == [16, 16]
    # 6 greedy runs (5 x 24 and 8) stay 6, evened out: 5 x 22 and 18.
    even = plan_even_runs(np.full(128, 21), 512, 2)
    assert sorted(len(r) for r in even) == [18, 22, 22, 22, 22, 22]


@pytest.mark.parametrize("parts", [1, 2, 3])
def test_even_runs_keep_every_sequence_and_the_budget(parts):
    rng = np.random.default_rng(0)
    for _ in range(50):
        lengths = rng.integers(1, 700, size=rng.integers(1, 40))
        runs = plan_even_runs(lengths, 512, parts)
        assert sorted(np.concatenate(runs).tolist()) == list(range(len(lengths)))
        assert len(runs) <= max(len(plan_runs(lengths, 512)), len(lengths))
        for run in runs:
            assert len(run) == 1 or lengths[run].max() * len(run) <= 512
    assert len(plan_even_runs(np.array([5]), 512, 2)) == 1


def test_pad_masks_padding():
    ids, mask = pad([np.array([5, 6, 7]), np.array([8])], pad_id=1)
    assert ids.tolist() == [[5, 6, 7], [8, 1, 1]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert ids.dtype == np.int64
