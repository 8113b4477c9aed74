"""How the scheduler packs a window into runs: every sequence once, within the padded
budget, evened out over parallel runs."""

import numpy as np
import pytest

from encoder.scheduling.planning import plan_even_runs, plan_runs


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
    # 6 greedy runs (5 x 24 and 8) would leave one worker 3 runs of 22, the other 22, 22
    # and 18: 8 runs of 16 finish sooner.
    even = plan_even_runs(np.full(128, 21), 512, 2)
    assert [len(r) for r in even] == [16] * 8


def test_even_runs_split_further_where_that_pads_less():
    """Two lengths: 2 runs would pad half the short ones to the long; runs of one length
    each finish sooner on 2 workers, despite each run's cost."""
    lengths = np.array([21, 13] * 16)
    assert len(plan_runs(lengths, 512)) == 2
    runs = plan_even_runs(lengths, 512, 2)
    assert len(runs) > 2 and all(len(set(lengths[run])) == 1 for run in runs)
    # One length only: more runs would only add their cost.
    assert len(plan_even_runs(np.full(32, 21), 512, 2)) == 2


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
