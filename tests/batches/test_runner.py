"""The batch runner in-process: states, counts, output files, cancel and resume."""

import asyncio
import json

import numpy as np
import pytest

from encoder.batches import runner as batch_runner
from encoder.batches.runner import BatchRunner
from encoder.batches.store import BatchStore
from encoder.errors import EmbeddingError, ErrorKind
from encoder.ingress.service import EmbeddingsService
from encoder.ingress.tokenize import TextTokenizer
from encoder.model.card import ModelCard
from encoder.settings import ServiceSettings
from tests.clients import batch_file, line_text
from tests.reference import cosine
from tests.schedulers import make_scheduler


class Counting:
    """The scheduler's embed, counting the batches it was given; can stop after a few."""

    def __init__(self, scheduler, fail_after: int | None = None) -> None:
        self.scheduler, self.calls, self.fail_after = scheduler, 0, fail_after

    async def __call__(self, batches):
        self.calls += len(batches)
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt("the service stopped")  # what a crash looks like here
        return await self.scheduler.embed(batches, background=True)


@pytest.fixture
def world(jina_dir, tmp_path):
    store = BatchStore(str(tmp_path / "store"))
    scheduler = make_scheduler(jina_dir)

    def runner(embed) -> BatchRunner:
        service = EmbeddingsService(ServiceSettings(model=str(jina_dir)),
                                    ModelCard.from_folder(jina_dir), TextTokenizer(jina_dir),
                                    embed)
        return BatchRunner(store, service, max_file_bytes=1 << 20)

    return store, scheduler, runner


def start(store, data: bytes) -> str:
    file = store.create_file("in.jsonl", "batch", data)
    return store.create_batch(file["id"], "/v1/embeddings", "24h", None)["id"]


def test_a_batch_completes_with_its_output_and_error_files(world, jina_reference):
    store, scheduler, runner = world
    batch_id = start(store, batch_file(5, bad=(3,)))
    asyncio.run(runner(Counting(scheduler)).run_pending())
    batch = store.get_batch(batch_id)
    assert batch["status"] == "completed" and batch["completed_at"]
    assert batch["request_counts"] == {"total": 5, "completed": 4, "failed": 1}
    outputs = [json.loads(x) for x in store.file_content(batch["output_file_id"]).splitlines()]
    assert [o["custom_id"] for o in outputs] == ["c0", "c1", "c2", "c4"]
    vector = outputs[1]["response"]["body"]["data"][0]["embedding"]
    assert cosine(np.asarray(vector), jina_reference.embed(line_text(1))) >= 0.99999
    errors = [json.loads(x) for x in store.file_content(batch["error_file_id"]).splitlines()]
    assert [e["custom_id"] for e in errors] == ["c3"]
    assert errors[0]["response"]["status_code"] == 400


def test_a_file_failing_validation_fails_the_batch(world):
    store, scheduler, runner = world
    data = batch_file(2) + b'{"custom_id": "c0", "url": "/v1/embeddings", "body": {}}\n'
    batch_id = start(store, data)
    asyncio.run(runner(Counting(scheduler)).run_pending())
    batch = store.get_batch(batch_id)
    assert batch["status"] == "failed"
    assert batch["errors"]["data"][0]["code"] == "duplicate_custom_id"
    assert batch["errors"]["data"][0]["line"] == 3


def test_a_restart_resumes_without_redoing_finished_parts(world, monkeypatch):
    store, scheduler, runner = world
    monkeypatch.setattr(batch_runner, "PART_LINES", 4)
    batch_id = start(store, batch_file(10))
    first = Counting(scheduler, fail_after=6)  # parts of 4 lines: the second part breaks
    with pytest.raises(KeyboardInterrupt):
        asyncio.run(runner(first).run_pending())
    assert store.done_parts(batch_id) == {0}
    assert store.get_batch(batch_id)["request_counts"]["completed"] == 4
    second = Counting(scheduler)
    asyncio.run(runner(second).run_pending())
    batch = store.get_batch(batch_id)
    assert batch["status"] == "completed" and second.calls == 6  # only the 6 lines not done
    ids = [json.loads(x)["custom_id"]
           for x in store.file_content(batch["output_file_id"]).splitlines()]
    assert ids == [f"c{i}" for i in range(10)]


def test_cancel_stops_between_parts_and_keeps_what_was_done(world, monkeypatch):
    store, scheduler, runner = world
    monkeypatch.setattr(batch_runner, "PART_LINES", 2)
    batch_id = start(store, batch_file(8))

    class CancelAfterFirstPart(Counting):
        async def __call__(self, batches):
            result = await super().__call__(batches)
            if self.calls == 2:
                store.request_cancel(batch_id)
            return result

    asyncio.run(runner(CancelAfterFirstPart(scheduler)).run_pending())
    batch = store.get_batch(batch_id)
    assert batch["status"] == "cancelled" and batch["cancelled_at"]
    assert batch["request_counts"]["completed"] == 2
    assert len(store.file_content(batch["output_file_id"]).splitlines()) == 2


def test_a_batch_past_its_window_expires_keeping_what_was_answered(world, monkeypatch):
    store, scheduler, runner = world
    monkeypatch.setattr(batch_runner, "PART_LINES", 2)
    file = store.create_file("in.jsonl", "batch", batch_file(5))
    batch_id = store.create_batch(file["id"], "/v1/embeddings", "24h", None, window_s=2)["id"]

    class Slow(Counting):
        async def __call__(self, batches):
            await asyncio.sleep(2.2)  # the first part outlasts the window
            return await super().__call__(batches)

    asyncio.run(runner(Slow(scheduler)).run_pending())
    batch = store.get_batch(batch_id)
    assert batch["status"] == "expired" and batch["expired_at"] >= batch["expires_at"]
    assert batch["request_counts"] == {"total": 5, "completed": 2, "failed": 3}
    outputs = [json.loads(x) for x in store.file_content(batch["output_file_id"]).splitlines()]
    errors = [json.loads(x) for x in store.file_content(batch["error_file_id"]).splitlines()]
    assert [o["custom_id"] for o in outputs] == ["c0", "c1"]
    assert [e["custom_id"] for e in errors] == ["c2", "c3", "c4"]
    assert all(e["error"]["code"] == "batch_expired" and e["response"] is None for e in errors)


def test_lines_refused_for_overload_are_retried_and_a_lines_own_400_is_final(world):
    store, scheduler, runner = world
    batch_id = start(store, batch_file(3, bad=(2,)))

    class Overloaded(Counting):
        """Refuses the first four calls as a full encoder queue does (a 503)."""

        async def __call__(self, batches):
            self.calls += len(batches)
            if self.calls <= 4:
                return [EmbeddingError(ErrorKind.UNAVAILABLE, "the encoders' queues are full",
                                       code="overloaded")] * len(batches)
            return await self.scheduler.embed(batches, background=True)

    embed = Overloaded(scheduler)
    asyncio.run(runner(embed).run_pending())
    batch = store.get_batch(batch_id)
    assert batch["status"] == "completed", batch
    assert batch["request_counts"] == {"total": 3, "completed": 2, "failed": 1}
    errors = [json.loads(x) for x in store.file_content(batch["error_file_id"]).splitlines()]
    assert [(e["custom_id"], e["response"]["status_code"]) for e in errors] == [("c2", 400)]
    assert embed.calls > 4
