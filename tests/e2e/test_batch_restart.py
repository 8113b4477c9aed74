"""A Batch API batch survives a service restart and resumes without redoing finished lines.

Its own module: two Serve instances on one host at once can answer each other's requests
(HAProxy's direct ingress to replica ports), so this test's two services never overlap
another module's.
"""

from __future__ import annotations

import json
import time

import pytest
from openai import OpenAI

from tests.clients import batch_file, wait_for_batch
from tests.serve_process import serve_run

# Two services start and a 1500-line batch runs: the waits below end before pytest's.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def test_a_batch_survives_a_service_restart(jina_dir, tmp_path):
    storage = {"batches": {"storage": str(tmp_path / "shared")}}
    for run in ("first", "second"):
        (tmp_path / run).mkdir()
    with serve_run(jina_dir, tmp_path / "first", args=storage) as first:
        client = OpenAI(base_url=f"{first.url}/v1", api_key="unused")
        lines = batch_file(1500, repeat=20, task="retrieval.passage")
        uploaded = client.files.create(file=("long.jsonl", lines), purpose="batch")
        batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings",
                                      completion_window="24h")
        deadline = time.monotonic() + 120
        while client.batches.retrieve(batch.id).request_counts.completed < 128:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    parts = tmp_path / "shared" / "batches" / batch.id
    before = {p.name: p.stat().st_mtime_ns for p in parts.glob("*.jsonl")}
    assert before
    with serve_run(jina_dir, tmp_path / "second", args=storage) as second:
        client = OpenAI(base_url=f"{second.url}/v1", api_key="unused")
        done = wait_for_batch(client, batch.id, lambda b: b.status == "completed", 300)
        lines = client.files.content(done.output_file_id).text.splitlines()
    ids = [json.loads(x)["custom_id"] for x in lines]
    assert ids == [f"c{i}" for i in range(1500)]  # each line once, in order
    after = {p.name: p.stat().st_mtime_ns for p in parts.glob("*.jsonl")}
    assert all(after[name] == mtime for name, mtime in before.items())  # not redone
