"""The Batch API and ``jina-embed`` on a real object store: an S3 server (moto, in server
mode) on 127.0.0.1, reached over HTTP through ``pyarrow.fs`` as any S3 would be. On it, a
BatchWorker replica killed with ``kill -9`` mid-batch is replaced by Serve, and the batch
completes with every ``custom_id`` exactly once across its output and error files; and a
batch the service stops in (the module's last test) is finished by the next service on the
same bucket without redoing a finished part."""

from __future__ import annotations

import json
import os
import signal

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from openai import OpenAI

from tests.clients import batch_file, wait_for_batch
from tests.e2e.test_embed_job import jina_embed
from tests.s3_server import BUCKET, CREDENTIALS, s3_server
from tests.serve_process import serve_run

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def s3():
    with s3_server() as server:
        yield server


def storage(s3) -> dict:
    return {"batches": {"storage": s3.uri("batches"), "poll_s": 1}}


@pytest.fixture(scope="module")
def service(s3, jina_dir, tmp_path_factory):
    with serve_run(jina_dir, tmp_path_factory.mktemp("s3"), env=CREDENTIALS,
                   args=storage(s3)) as running:
        yield running


@pytest.fixture(scope="module")
def client(service):
    return OpenAI(base_url=f"{service.url}/v1", api_key="unused", max_retries=0)


def custom_ids(client, file_id: str | None) -> list[str]:
    if file_id is None:
        return []
    return [json.loads(line)["custom_id"]
            for line in client.files.content(file_id).text.splitlines()]


def test_the_batch_api_keeps_its_files_and_batches_in_the_bucket(s3, client):
    uploaded = client.files.create(file=("in.jsonl", batch_file(3, inputs=4)), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings",
                                  completion_window="24h")
    batch = wait_for_batch(client, batch.id, lambda b: b.status == "completed")
    assert custom_ids(client, batch.output_file_id) == ["c0", "c1", "c2"]
    keys = {o["Key"] for o in s3.client.list_objects_v2(Bucket=BUCKET, Prefix="batches/")
            ["Contents"]}
    assert f"batches/files/{uploaded.id}.data" in keys
    assert f"batches/batches/{batch.id}.json" in keys


def test_a_batchworker_killed_mid_batch_is_replaced_and_the_batch_completes(service, client):
    lines = 1600
    uploaded = client.files.create(file=("big.jsonl", batch_file(lines, inputs=4)),
                                   purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings",
                                  completion_window="24h")
    wait_for_batch(client, batch.id, lambda b: b.request_counts and b.request_counts.completed > 0)
    victim = service.replica_pid("BatchWorker")
    os.kill(victim, signal.SIGKILL)
    batch = wait_for_batch(client, batch.id, lambda b: b.status in ("completed", "failed"), 300)
    assert batch.status == "completed", batch
    assert service.replica_pid("BatchWorker") != victim  # Serve replaced the replica
    seen = custom_ids(client, batch.output_file_id) + custom_ids(client, batch.error_file_id)
    assert sorted(seen) == sorted(f"c{i}" for i in range(lines))  # each exactly once
    assert batch.request_counts.total == lines


def test_jina_embed_reads_and_writes_the_bucket(s3, jina_dir):
    fs, root = pafs.FileSystem.from_uri(s3.uri("corpus/in.parquet"))
    texts = [f"document {i} in a bucket" for i in range(50)]
    pq.write_table(pa.table({"doc_id": list(range(50)), "text": texts}), root, filesystem=fs)
    out_fs, out_root = pafs.FileSystem.from_uri(s3.uri("vectors"))
    summary = jina_embed("--input", s3.uri("corpus/in.parquet"), "--output", s3.uri("vectors"),
                         "--model", str(jina_dir), "--actor-cpus", "1", env=CREDENTIALS,
                         summary=(out_fs, out_root))
    assert summary["rows"] == 50 and summary["failed_rows"] == 0
    table = pq.read_table(f"{out_root}/in", filesystem=out_fs).sort_by("doc_id")
    assert table.column("doc_id").to_pylist() == list(range(50))
    assert all(len(v) == 64 for v in table.column("embedding").to_pylist())


@pytest.mark.timeout(900)  # a second service starts and finishes the batch: waits below end first
def test_a_batch_survives_a_service_restart(s3, service, client, jina_dir, tmp_path):
    """The module's service stops mid-batch; a new one on the same bucket finishes it, every
    line once and in order, no finished part written again. (Last: it stops the module's
    service.)"""
    lines = batch_file(1500, repeat=20, task="retrieval.passage")
    uploaded = client.files.create(file=("long.jsonl", lines), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings",
                                  completion_window="24h")
    wait_for_batch(client, batch.id, lambda b: b.request_counts.completed >= 128, 120)
    service.stop()
    service.assert_nothing_left()
    prefix = f"batches/batches/{batch.id}/"

    def parts() -> dict[str, str]:
        listed = s3.client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
        return {o["Key"]: o["LastModified"] for o in listed if o["Key"].endswith(".jsonl")}

    before = parts()
    assert before
    with serve_run(jina_dir, tmp_path, env=CREDENTIALS, args=storage(s3)) as second:
        client = OpenAI(base_url=f"{second.url}/v1", api_key="unused", max_retries=0)
        done = wait_for_batch(client, batch.id, lambda b: b.status == "completed", 300)
        ids = custom_ids(client, done.output_file_id)
    assert ids == [f"c{i}" for i in range(1500)]  # each line once, in order
    after = parts()
    assert all(after[key] == written for key, written in before.items())  # not redone
