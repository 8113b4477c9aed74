"""A batch not finished within its completion window ends ``expired``, as OpenAI's do: the
window is set short in the config (``batches.completion_window_s``), the lines answered stay
in the output file and the rest are in the error file as ``batch_expired``, each once."""

from __future__ import annotations

import json
import time

import pytest
from openai import OpenAI

from tests.e2e.services import API_KEY, BATCH_WINDOW_S

pytestmark = pytest.mark.e2e

# Enough that the 2 s window closes on some of them: 1000 lines of 8 short inputs finished
# in time; each of these has 8 inputs of ~60 tokens.
LINES = 1500


@pytest.fixture(scope="module")
def client(guarded_service):
    # Its config sets batches.completion_window_s: BATCH_WINDOW_S.
    return OpenAI(base_url=f"{guarded_service.url}/v1", api_key=API_KEY, max_retries=0)


def test_a_batch_past_its_window_expires_keeping_the_lines_answered(client):
    lines = b"".join(json.dumps({"custom_id": f"line-{i}", "method": "POST",
                                 "url": "/v1/embeddings",
                                 "body": {"input": [f"line {i} of a long batch " * 12] * 8}}
                                ).encode() + b"\n" for i in range(LINES))
    uploaded = client.files.create(file=("in.jsonl", lines), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings",
                                  completion_window="24h")
    assert batch.expires_at - batch.created_at in (BATCH_WINDOW_S, BATCH_WINDOW_S + 1)
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
