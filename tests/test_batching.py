import numpy as np

from encoder.batching import TokenBatch, pad, request_batches, split_by_tokens


def test_token_batch_round_trip():
    sequences = [[0, 5, 2], [0, 2], [0, 7, 8, 9, 2]]
    batch = TokenBatch.from_lists(3, sequences)
    assert len(batch) == 3 and batch.tokens == 10 and batch.outputs == 3
    assert [s.tolist() for s in batch.sequences()] == sequences


def test_split_by_tokens_keeps_order_and_budget():
    sequences = [[1] * n for n in (5, 5, 5, 20, 1, 1)]
    ranges = split_by_tokens(sequences, budget=10)
    assert [list(r) for r in ranges] == [[0, 1], [2], [3], [4, 5]]
    assert split_by_tokens([], budget=10) == []


def test_a_long_sequence_gets_a_batch_of_its_own():
    sequences = [[1] * n for n in (2, 3, 9, 2, 8, 9, 1)]
    ranges = split_by_tokens(sequences, budget=20, alone_above=8)
    assert [list(r) for r in ranges] == [[0, 1], [2], [3, 4], [5], [6]]
    assert [list(r) for r in split_by_tokens([[1] * 9], 20, alone_above=8)] == [[0]]


def test_request_batches_split_by_budget():
    sequences = [[1] * n for n in (5, 5, 5, 40)]
    batches = request_batches(2, sequences, budget=10)
    assert [len(b) for b in batches] == [2, 1, 1]
    assert [b.tokens for b in batches] == [10, 5, 40]  # over the budget: a batch of its own
    assert all(b.task_id == 2 for b in batches)


def test_pad_masks_padding():
    ids, mask = pad([np.array([5, 6, 7]), np.array([8])], pad_id=1)
    assert ids.tolist() == [[5, 6, 7], [8, 1, 1]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert ids.dtype == np.int64
