"""The OpenAI Batch API on the running service, through the real ``openai`` SDK: files,
batches, output and error files, list, cancel, failed validation, a restart mid-batch, and
interactive queries while a batch runs."""

from __future__ import annotations

import json
import time

import httpx
import numpy as np
import openai
import pytest
from openai import OpenAI

from tests.clients import batch_file, line_text, wait_for_batch
from tests.reference import cosine

pytestmark = pytest.mark.e2e


def passages(count: int, bad: tuple[int, ...] = (), repeat: int = 6) -> bytes:
    return batch_file(count, bad, repeat, task="retrieval.passage")


@pytest.fixture(scope="module")
def service(jina_service):
    return jina_service


@pytest.fixture(scope="module")
def client(service):
    return OpenAI(base_url=f"{service.url}/v1", api_key="unused")


def test_a_batch_through_the_sdk(client, jina_reference):
    uploaded = client.files.create(file=("requests.jsonl", passages(40, bad=(7,))),
                                   purpose="batch")
    assert uploaded.purpose == "batch" and uploaded.bytes > 0
    assert client.files.retrieve(uploaded.id).filename == "requests.jsonl"
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings",
                                  completion_window="24h", metadata={"job": "test"})
    assert batch.status == "validating" and batch.metadata == {"job": "test"}
    done = wait_for_batch(client, batch.id, lambda b: b.status in {"completed", "failed"})
    assert done.status == "completed", done.errors
    assert (done.request_counts.total, done.request_counts.completed,
            done.request_counts.failed) == (40, 39, 1)
    outputs = [json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
    assert [o["custom_id"] for o in outputs] == [f"c{i}" for i in range(40) if i != 7]
    first = outputs[0]["response"]
    assert first["status_code"] == 200 and first["body"]["model"] == "jina-embeddings-v3"
    want = jina_reference.embed(line_text(0, 6), "retrieval.passage")
    assert cosine(np.asarray(first["body"]["data"][0]["embedding"]), want) >= 0.99999
    errors = [json.loads(x) for x in client.files.content(done.error_file_id).text.splitlines()]
    assert errors[0]["custom_id"] == "c7"
    assert errors[0]["response"]["body"]["error"]["param"] == "input"
    assert {f.id for f in client.files.list()} >= {uploaded.id, done.output_file_id}
    assert client.files.delete(uploaded.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(uploaded.id)


def test_validation_failures_as_openai_reports_them(client):
    bad = passages(3) + passages(1)  # c0 twice
    uploaded = client.files.create(file=("dup.jsonl", bad), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings",
                                  completion_window="24h")
    failed = wait_for_batch(client, batch.id, lambda b: b.status in {"failed", "completed"})
    assert failed.status == "failed"
    assert failed.errors.data[0].code == "duplicate_custom_id" and failed.errors.data[0].line == 4
    with pytest.raises(openai.BadRequestError):
        client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                              completion_window="24h")
    with pytest.raises(openai.BadRequestError):
        client.files.create(file=("x.jsonl", b"{}"), purpose="fine-tune")
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_missing")


def test_cancel_and_list(client):
    uploaded = client.files.create(file=("big.jsonl", passages(3000, repeat=40)),
                                   purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings",
                                  completion_window="24h")
    wait_for_batch(client, batch.id, lambda b: b.status == "in_progress")
    assert client.batches.cancel(batch.id).status == "cancelling"
    cancelled = wait_for_batch(client, batch.id, lambda b: b.status == "cancelled")
    assert cancelled.request_counts.completed < 3000
    listed = client.batches.list(limit=1)
    assert listed.data[0].id == batch.id and listed.has_more
    everything = [b.id for b in client.batches.list(limit=2)]  # the SDK pages on its own
    assert batch.id in everything and len(everything) == len(set(everything)) >= 3


def test_lone_queries_stay_fast_while_a_batch_runs(service, client):
    def lone_p50(count: int = 40) -> float:
        samples = []
        with httpx.Client(timeout=30) as http:
            for _ in range(count):
                start = time.perf_counter()
                assert http.post(f"{service.url}/v1/embeddings",
                                 json={"input": "a lone query"}).status_code == 200
                samples.append(time.perf_counter() - start)
        return float(np.percentile(samples, 50)) * 1000

    idle = lone_p50()
    uploaded = client.files.create(file=("load.jsonl", passages(4000, repeat=40)),
                                   purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings",
                                  completion_window="24h")
    wait_for_batch(client, batch.id, lambda b: b.status == "in_progress")
    busy = lone_p50()
    still = client.batches.retrieve(batch.id)
    client.batches.cancel(batch.id)
    print(f"lone query p50: idle {idle:.1f} ms, during a batch {busy:.1f} ms "
          f"({busy / idle:.2f}x; batch {still.status}, {still.request_counts.completed} done)")
    assert still.status == "in_progress"  # the batch really ran during the measurement
    assert busy <= 3 * idle
