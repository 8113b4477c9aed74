"""The encoder's scheduler as a queue: windows merge, cap, skip and report work as promised,
and a failing window fails only its callers."""

import asyncio
import threading

import numpy as np

from encoder.errors import EmbeddingError, ErrorKind
from tests.schedulers import make_scheduler, parcel, tokens


def test_a_window_of_requests_is_sorted_together(jina_dir):
    padded = []
    scheduler = make_scheduler(jina_dir, budget=40, on_run=lambda _, t, __: padded.append(t))
    first, second = tokens(20, 5), tokens(19, 4)
    together = scheduler.run_window([parcel(0, first), parcel(0, second)])
    assert padded == [40, 10]  # 20 with 19, then 5 with 4; apart they pad to 2 x 40
    alone = [scheduler.run_window([parcel(0, s)])[0] for s in (first, second)]
    for got, want in zip(together, alone, strict=True):
        assert np.allclose(got, want, atol=1e-5)


def test_work_queued_during_a_window_joins_the_next_one(jina_dir):
    windows, waits = [], []
    scheduler = make_scheduler(jina_dir, on_wait=waits.append)
    run_window = scheduler.run_window

    def slow(batches, *args):
        windows.append(len(batches))
        threading.Event().wait(0.05)
        return run_window(batches, *args)

    scheduler.run_window = slow

    async def scenario():
        first = asyncio.ensure_future(scheduler.embed([parcel(0, tokens(5))]))
        await asyncio.sleep(0.01)  # the first window runs: the next five pile up
        rest = [asyncio.ensure_future(scheduler.embed([parcel(0, tokens(5 + i))]))
                for i in range(5)]
        return await first, await asyncio.gather(*rest)

    first, rest = asyncio.run(scenario())
    assert windows == [1, 5] and len(waits) == 6 and max(waits) > 0.02
    assert all(isinstance(r[0], np.ndarray) for r in [first, *rest])


def test_a_window_that_raises_fails_its_callers_and_the_next_one_runs(jina_dir):
    scheduler = make_scheduler(jina_dir)
    run_window = scheduler.run_window
    scheduler.run_window = lambda *args: 1 / 0

    async def scenario():
        failed = await scheduler.embed([parcel(0, tokens(5))])
        scheduler.run_window = run_window
        return failed, await scheduler.embed([parcel(0, tokens(5))])

    failed, fine = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert isinstance(failed[0], EmbeddingError) and failed[0].kind is ErrorKind.ENCODER_FAILED
    assert isinstance(fine[0], np.ndarray)


def test_the_window_caps_the_tokens_taken(jina_dir):
    windows = []
    scheduler = make_scheduler(jina_dir, budget=64, window=64)
    run_window = scheduler.run_window
    scheduler.run_window = lambda b, *args: windows.append(len(b)) or run_window(b, *args)

    async def scenario():
        return await scheduler.embed([parcel(0, tokens(30)) for _ in range(5)])

    assert len(asyncio.run(scenario())) == 5
    assert windows == [2, 2, 1]


def test_cancelled_work_is_skipped_before_and_during_its_window(jina_dir):
    runs = []
    scheduler = make_scheduler(jina_dir, budget=64, on_run=lambda *run: runs.append(run))

    async def scenario():
        started = threading.Event()
        original = scheduler.model.token_states

        def slow_first_run(*args):
            started.set()
            threading.Event().wait(0.1)
            return original(*args)

        scheduler.model.token_states = slow_first_run
        big = scheduler.enqueue([parcel(0, tokens(60) * 8)])  # 8 runs of one sequence
        queued = scheduler.enqueue([parcel(0, tokens(10))])
        while not started.is_set():
            await asyncio.sleep(0.005)
        big[0].cancel()  # during its first run: its other seven runs are skipped
        queued[0].cancel()  # before its run: never run
        await asyncio.sleep(0.3)

    asyncio.run(scenario())
    assert len(runs) == 1


def test_held_counts_queued_and_running_batches_whose_callers_wait(jina_dir):
    scheduler = make_scheduler(jina_dir)
    run_window = scheduler.run_window
    seen = []

    def observed(*args):
        seen.append(scheduler.held())  # the running window still counts
        return run_window(*args)

    scheduler.run_window = observed

    async def scenario():
        futures = scheduler.enqueue([parcel(0, tokens(5 + i)) for i in range(3)])
        futures[2].cancel()  # its caller went away: no longer load
        queued = scheduler.held()
        await asyncio.gather(*futures[:2])
        return queued, scheduler.held()

    assert asyncio.run(scenario()) == (2, 0)
    assert seen == [2]
