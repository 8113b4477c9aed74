"""``jina-embed`` on a real local Ray: parquet, JSONL and CSV in, parquet out; an OpenAI
batch file answered offline; bad rows reported per row; a re-run skips finished inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.reference import cosine
from tests.serve_process import ROOT

pytestmark = pytest.mark.e2e

TEXTS = [f"passage {i} about bulk embedding with Ray Data" for i in range(300)]


def jina_embed(*args: str, env: dict | None = None, summary=None) -> dict:
    """Run the console script; the summary it wrote beside its outputs (on ``summary``'s
    ``(filesystem, folder)`` when the output is not a local folder)."""
    done = subprocess.run([str(Path(sys.executable).with_name("jina-embed")), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "RAY_ADDRESS": "local", "PYTHONPATH": str(ROOT),
                               "RAY_USAGE_STATS_ENABLED": "0", **(env or {})})
    assert done.returncode in (0, 1), done.stderr[-3000:]
    if summary is not None:
        fs, folder = summary
        with fs.open_input_stream(f"{folder}/_jina_embed_summary.json") as stream:
            return json.loads(stream.read())
    output = Path(args[args.index("--output") + 1])
    return json.loads((output / "_jina_embed_summary.json").read_text())


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("inputs")
    ids = list(range(len(TEXTS)))
    # Small row groups: the parquet file is read as several blocks.
    pq.write_table(pa.table({"doc_id": ids, "text": TEXTS}), folder / "corpus.parquet",
                   row_group_size=64)
    with (folder / "extra.jsonl").open("w") as f:
        for i, text in enumerate(["你好，世界", "", "word " * 9000, "emoji 🎉"]):
            f.write(json.dumps({"doc_id": 1000 + i, "text": text, "lang": "x"}) + "\n")
    pd.DataFrame({"doc_id": [2000, 2001], "text": ["a csv row", "another csv row"]}).to_csv(
        folder / "sheet.csv", index=False)
    return folder


def test_a_folder_of_parquet_jsonl_and_csv_then_a_rerun(inputs, tmp_path, jina_dir,
                                                         jina_reference):
    out = tmp_path / "out"
    common = ("--output", str(out), "--model", str(jina_dir), "--actor-cpus", "1")
    summary = jina_embed("--input", str(inputs), "--task", "retrieval.passage",
                         "--dimensions", "32", *common)
    assert summary["files"] == 3 and summary["rows"] == len(TEXTS) + 6
    assert summary["failed_rows"] == 2 and not summary["failed_files"]
    table = pq.read_table(out / "corpus").sort_by("doc_id")
    assert table.column("doc_id").to_pylist() == list(range(len(TEXTS)))
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 32)
    for i in (0, 151, 299):
        want = jina_reference.embed(TEXTS[i], "retrieval.passage", dimensions=32)
        assert cosine(table.column("embedding")[i].as_py(), want) >= 0.99999
    extra = pq.read_table(out / "extra").sort_by("doc_id").to_pylist()
    assert [r["lang"] for r in extra] == ["x"] * 4  # every other column kept
    assert extra[1]["error"] == "the text is empty" and extra[1]["embedding"] is None
    assert "more than the limit of 8192" in extra[2]["error"]
    want = jina_reference.embed("你好，世界", "retrieval.passage", dimensions=32)
    assert cosine(extra[0]["embedding"], want) >= 0.99999
    assert pq.read_table(out / "sheet").num_rows == 2

    # A re-run with the same OUTPUT: what is done is skipped, a new input is done (with a
    # column of another name and binary vectors), one without the column is reported.
    written = (out / "extra").stat().st_mtime_ns
    pd.DataFrame({"body": ["new", "rows"]}).to_csv(inputs / "more.csv", index=False)
    again = jina_embed("--input", str(inputs / "*.csv"), "--column", "body",
                       "--embedding-type", "ubinary", *common)
    (inputs / "more.csv").unlink()
    assert again["skipped"] == [str(inputs / "sheet.csv")] and again["rows"] == 2
    assert (out / "extra").stat().st_mtime_ns == written
    assert pq.read_table(out / "more").schema.field("embedding").type == pa.list_(
        pa.uint8(), 8)


def test_openai_batch_files_run_offline(tmp_path, jina_dir, jina_reference):
    lines = [{"custom_id": f"r{i}", "method": "POST", "url": "/v1/embeddings",
              "body": {"input": [f"query {i}"], "task": "retrieval.query"}} for i in range(20)]
    lines[5]["body"] = {"input": []}
    folder = tmp_path / "batches"
    folder.mkdir()
    (folder / "requests.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    # A file that fails OpenAI's validation (a duplicate custom_id) is reported, not run.
    (folder / "bad.jsonl").write_text(json.dumps(lines[0]) + "\n" + json.dumps(lines[0]) + "\n")
    out = tmp_path / "out"
    summary = jina_embed("--input", str(folder), "--output", str(out), "--model",
                         str(jina_dir), "--actor-cpus", "1")
    assert summary["rows"] == 20 and summary["failed_rows"] == 1
    outputs = [json.loads(x) for x in (out / "requests.output.jsonl").read_text().splitlines()]
    errors = [json.loads(x) for x in (out / "requests.errors.jsonl").read_text().splitlines()]
    assert [o["custom_id"] for o in outputs] == [f"r{i}" for i in range(20) if i != 5]
    assert errors[0]["custom_id"] == "r5" and errors[0]["response"]["status_code"] == 400
    vector = outputs[0]["response"]["body"]["data"][0]["embedding"]
    assert cosine(vector, jina_reference.embed("query 0", "retrieval.query")) >= 0.99999
    assert summary["failed_files"][0]["errors"][0]["code"] == "duplicate_custom_id"
    assert not (out / "bad.output.jsonl").exists()
