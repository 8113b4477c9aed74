
from encoder.parcels import Parcel, request_parcels, split_by_tokens


def test_parcel_round_trip():
    sequences = [[0, 5, 2], [0, 2], [0, 7, 8, 9, 2]]
    parcel = Parcel.from_lists(3, sequences)
    assert len(parcel) == 3 and parcel.tokens == 10 and parcel.outputs == 3
    assert parcel.longest == 5
    assert [s.tolist() for s in parcel.sequences()] == sequences


def test_split_by_tokens_keeps_order_and_budget():
    sequences = [[1] * n for n in (5, 5, 5, 20, 1, 1)]
    ranges = split_by_tokens(sequences, budget=10)
    assert [list(r) for r in ranges] == [[0, 1], [2], [3], [4, 5]]
    assert split_by_tokens([], budget=10) == []


def test_a_long_sequence_gets_a_parcel_of_its_own():
    sequences = [[1] * n for n in (2, 3, 9, 2, 8, 9, 1)]
    ranges = split_by_tokens(sequences, budget=20, alone_above=8)
    assert [list(r) for r in ranges] == [[0, 1], [2], [3, 4], [5], [6]]
    assert [list(r) for r in split_by_tokens([[1] * 9], 20, alone_above=8)] == [[0]]


def test_request_parcels_split_by_budget():
    sequences = [[1] * n for n in (5, 5, 5, 40)]
    parcels = request_parcels(2, sequences, budget=10)
    assert [len(p) for p in parcels] == [2, 1, 1]
    assert [p.tokens for p in parcels] == [10, 5, 40]  # over the budget: a parcel of its own
    assert all(p.task_id == 2 for p in parcels)
