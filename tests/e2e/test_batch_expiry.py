"""A batch not finished within its completion window ends ``expired``, as OpenAI's do: the
window is set short in the config (``batches.completion_window_s``), the lines answered stay
in the output file and the rest are in the error file as ``batch_expired``, each once."""

from __future__ import annotations

import json
import time

import pytest
from openai import OpenAI

from tests.serve_process import serve_run

pytestmark = pytest.mark.e2e

# Enough that the 2 s window closes on some of them (~75 answered a second here).
LINES = 1000


@pytest.fixture(scope="module")
def client(jina_dir, tmp_path_factory):
    with serve_run(jina_dir, tmp_path_factory.mktemp("expiry"),
                   args={"batches": {"completion_window_s": 2}}) as running:
        yield OpenAI(base_url=f"{running.url}/v1", api_key="unused", max_retries=0)


def test_a_batch_past_its_window_expires_keeping_the_lines_answered(client):
    lines = b"".join(json.dumps({"custom_id": f"line-{i}", "method": "POST",
                                 "url": "/v1/embeddings",
                                 "body": {"input": [f"line {i} of a long batch"] * 8}}
                                ).encode() + b"\n" for i in range(LINES))
    uploaded = client.files.create(file=("in.jsonl", lines), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings",
                                  completion_window="24h")
    assert batch.expires_at - batch.created_at in (2, 3)
    deadline = time.monotonic() + 120
    while batch.status not in ("completed", "expired", "failed", "cancelled"):
        assert time.monotonic() < deadline, batch
        time.sleep(0.5)
        batch = client.batches.retrieve(batch.id)
    assert batch.status == "expired" and batch.expired_at >= batch.expires_at, batch
    answered = [json.loads(x) for x in client.files.content(batch.output_file_id)
                .text.splitlines()]
    expired = [json.loads(x) for x in client.files.content(batch.error_file_id)
               .text.splitlines()]
    assert answered and expired  # some lines made it in time, some did not
    assert all(e["error"]["code"] == "batch_expired" for e in expired)
    ids = [line["custom_id"] for line in answered + expired]
    assert sorted(ids) == sorted(f"line-{i}" for i in range(LINES))
    counts = batch.request_counts
    assert (counts.total, counts.completed, counts.failed) == (LINES, len(answered),
                                                               len(expired))
