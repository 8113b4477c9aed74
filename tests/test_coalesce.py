import asyncio

import pytest

from encoder.batching import TokenBatch
from encoder.coalesce import Coalescer


def batch(tokens: int, tag: int) -> TokenBatch:
    return TokenBatch.from_lists(tag, [[1] * tokens], budget=1000)


def test_work_queued_during_a_run_is_merged_into_the_next():
    runs: list[list[int]] = []

    async def run(batches):
        runs.append([b.task_id for b in batches])
        await asyncio.sleep(0.05)
        return [b.task_id * 10 for b in batches]

    async def scenario():
        coalescer = Coalescer(run, max_tokens=100, concurrency=1)
        first = asyncio.create_task(coalescer.submit([batch(10, 1)]))
        await asyncio.sleep(0.01)  # the first run is going: the next five pile up
        rest = [asyncio.create_task(coalescer.submit([batch(10, i)])) for i in range(2, 7)]
        return await first, [await t for t in rest]

    first, rest = asyncio.run(scenario())
    assert first == [10] and rest == [[20], [30], [40], [50], [60]]
    assert runs == [[1], [2, 3, 4, 5, 6]]


def test_token_budget_splits_runs_and_keeps_order():
    runs: list[int] = []

    async def run(batches):
        runs.append(len(batches))
        return [b.task_id for b in batches]

    async def scenario():
        coalescer = Coalescer(run, max_tokens=25, concurrency=1)
        return await coalescer.submit([batch(10, i) for i in range(7)])

    assert asyncio.run(scenario()) == list(range(7))
    assert runs == [2, 2, 2, 1]


def test_a_failed_run_fails_only_its_callers():
    async def run(batches):
        if any(b.task_id == 13 for b in batches):
            raise RuntimeError("replica died")
        return [b.task_id for b in batches]

    async def scenario():
        coalescer = Coalescer(run, max_tokens=10, concurrency=1)
        bad = asyncio.create_task(coalescer.submit([batch(10, 13)]))
        good = asyncio.create_task(coalescer.submit([batch(10, 7)]))
        with pytest.raises(RuntimeError):
            await bad
        return await good

    assert asyncio.run(scenario()) == [7]


def test_concurrency_overlaps_runs():
    async def run(batches):
        await asyncio.sleep(0.1)
        return [0] * len(batches)

    async def scenario():
        coalescer = Coalescer(run, max_tokens=10, concurrency=4)
        start = asyncio.get_running_loop().time()
        await asyncio.gather(*(coalescer.submit([batch(10, i)]) for i in range(4)))
        return asyncio.get_running_loop().time() - start

    assert asyncio.run(scenario()) < 0.25
