"""The scheduler's long queue: long inputs run one at a time beside short work, only if they
fit the replica's memory, and end when their callers give up."""

import asyncio
import threading
import time

import numpy as np

from encoder.errors import EmbeddingError, ErrorKind
from tests.reference import cosine
from tests.schedulers import make_scheduler, parcel, tokens

BUDGET = 64  # max_run_tokens: longer inputs take the long queue


def _slow_long_runs(scheduler, seconds: float, log: list) -> None:
    """Make long runs take ``seconds`` longer (a document's minutes in miniature); log
    (event, length, session, thread) as runs start and end on either session."""
    for name in ("model", "parallel"):
        session = getattr(scheduler, name)
        if session is None:
            continue

        def token_states(ids, mask, task_id, options=None, types=None, name=name,
                         original=session.token_states):
            where = (name, threading.current_thread().name)
            log.append(("start", ids.shape[1], *where))
            if ids.shape[1] > BUDGET:
                threading.Event().wait(seconds)
            out = original(ids, mask, task_id, options, types)
            log.append(("end", ids.shape[1], *where))
            return out

        session.token_states = token_states


def test_short_work_goes_on_beside_a_long_input(jina_dir):
    log = []
    scheduler = make_scheduler(jina_dir, budget=BUDGET, parallel=2)
    _slow_long_runs(scheduler, 1.0, log)

    async def scenario():
        long = scheduler.enqueue([parcel(0, tokens(500))])[0]
        await asyncio.sleep(0.2)  # the long run started
        started = time.perf_counter()
        short = await scheduler.embed([parcel(0, tokens(9, 12))])
        return time.perf_counter() - started, short, long.done(), await long

    seconds, short, long_done_then, long = asyncio.run(scenario())
    assert seconds < 0.5 and not long_done_then, (seconds, log)
    assert isinstance(short[0], np.ndarray) and isinstance(long, np.ndarray)
    assert log[0][:3] == ("start", 500, "model") and log[0][3].startswith("onnx-long")
    # Beside the long run the short inputs ran on the parallel session, not the busy full one.
    assert log[1][:3] == ("start", 12, "parallel") and log[-1][:3] == ("end", 500, "model")


def test_long_inputs_run_one_at_a_time_and_give_the_right_vectors(jina_dir, jina_reference):
    log = []
    scheduler = make_scheduler(jina_dir, budget=BUDGET, parallel=2)
    _slow_long_runs(scheduler, 0.2, log)
    documents = [tokens(300)[0], tokens(400)[0]]

    async def scenario():
        return await scheduler.embed([parcel(4, [d]) for d in documents])

    results = asyncio.run(scenario())
    assert [e for e, n, *_ in log if n > BUDGET] == ["start", "end", "start", "end"]
    for result, ids in zip(results, documents, strict=True):
        assert cosine(result[0], jina_reference.embed_ids(ids, "text-matching")) >= 0.99999


def test_a_long_run_ends_when_its_caller_gives_up(jina_dir):
    scheduler = make_scheduler(jina_dir, budget=BUDGET)
    original = scheduler.model.token_states
    ended = []

    def until_terminated(ids, mask, task_id, options=None, types=None):
        if options is not None and ids.shape[1] > BUDGET:
            deadline = time.monotonic() + 5
            while not options.terminate and time.monotonic() < deadline:
                time.sleep(0.01)
            try:  # ORT itself refuses to go on with terminated run options
                return original(ids, mask, task_id, options, types)
            except Exception as exc:
                ended.append(type(exc).__name__)
                raise
        return original(ids, mask, task_id, options, types)

    scheduler.model.token_states = until_terminated

    async def scenario():
        long = scheduler.enqueue([parcel(0, tokens(500))])[0]
        await asyncio.sleep(0.2)
        long.cancel()
        await asyncio.sleep(0.3)
        return scheduler.held(), await scheduler.embed([parcel(0, tokens(300))])

    held, again = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert ended and held == 0
    assert not scheduler.executor.failed  # a terminated run is not a broken session
    assert isinstance(again[0], np.ndarray)


def test_a_long_input_that_cannot_fit_is_refused_before_any_run(jina_dir):
    runs = []
    scheduler = make_scheduler(jina_dir, budget=BUDGET, memory=1,
                               on_run=lambda *run: runs.append(run))

    async def scenario():
        return await scheduler.embed([parcel(0, tokens(500)), parcel(0, tokens(20))])

    refused, short = asyncio.run(scenario())
    assert isinstance(refused, EmbeddingError) and refused.kind is ErrorKind.TOO_LARGE
    assert refused.status == 413 and refused.code == "input_too_long"
    assert "500 tokens" in refused.message and "at most 0 tokens" in refused.message
    assert isinstance(short, np.ndarray) and len(runs) == 1
