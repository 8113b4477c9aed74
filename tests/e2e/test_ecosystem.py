"""Real clients and operations against the served jina-shaped model: LangChain, Java, the
README's curl examples, late chunking and binary vectors over HTTP, and the Prometheus metrics.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time

import httpx
import numpy as np
import pytest
import tiktoken
from langchain_openai import OpenAIEmbeddings
from openai import OpenAI

from tests.clients import sample, scrape
from tests.reference import cosine, finish_reference, late_chunk_reference
from tests.serve_process import ROOT

pytestmark = pytest.mark.e2e

CHUNKS = ["Berlin is the capital of Germany.", "It has 3.85 million inhabitants.",
          "柏林是德国的首都。"]


@pytest.fixture(scope="module")
def service(jina_service):
    return jina_service


@pytest.fixture(scope="module")
def base_url(service):
    return service.url


def test_late_chunking_and_binary_through_the_openai_sdk(base_url, jina_reference):
    client = OpenAI(base_url=f"{base_url}/v1", api_key="unused")
    late = client.embeddings.create(model="jina-embeddings-v3", input=CHUNKS, dimensions=32,
                                    extra_body={"task": "retrieval.passage",
                                                "late_chunking": True})
    expected = late_chunk_reference(jina_reference, CHUNKS, "retrieval.passage")
    for item, want in zip(late.data, expected, strict=True):
        assert cosine(item.embedding, finish_reference(want, 32, True)) >= 0.99999
    # Binary vectors are JSON integers: the SDK must be told not to decode base64.
    binary = client.embeddings.create(model="jina-embeddings-v3", input=CHUNKS[:1],
                                      encoding_format="float", dimensions=64,
                                      extra_body={"embedding_type": "ubinary"})
    want = np.packbits(jina_reference.embed(CHUNKS[0], "text-matching") > 0)
    assert binary.data[0].embedding == want.tolist()


def test_tokenize_over_http(base_url):
    response = httpx.post(f"{base_url}/tokenize", json={"inputs": "你好世界"})
    tokens = response.json()[0]
    assert response.status_code == 200 and tokens[0]["id"] == 0 and tokens[-1]["id"] == 2


def test_langchain_with_strings(base_url, jina_reference):
    texts = ["A cat sits on the mat.", "你好，世界"]
    documents = OpenAIEmbeddings(model="jina-embeddings-v3", base_url=f"{base_url}/v1",
                                 api_key="unused", check_embedding_ctx_length=False,
                                 model_kwargs={"extra_body": {"task": "retrieval.passage"}})
    for got, text in zip(documents.embed_documents(texts), texts, strict=True):
        assert cosine(got, jina_reference.embed(text, "retrieval.passage")) >= 0.99999
    query = OpenAIEmbeddings(model="jina-embeddings-v3", base_url=f"{base_url}/v1",
                             api_key="unused", check_embedding_ctx_length=False,
                             model_kwargs={"extra_body": {"task": "retrieval.query"}})
    vector = query.embed_query("Where does the cat sit?")
    want = jina_reference.embed("Where does the cat sit?", "retrieval.query")
    assert cosine(vector, want) >= 0.99999


def test_langchain_default_sends_tiktoken_ids_that_mean_nothing(base_url, jina_reference,
                                                                monkeypatch):
    """Why the README insists on check_embedding_ctx_length=False."""
    # tiktoken's own files need the internet: a byte-level encoding stands in for it.
    byte_level = tiktoken.Encoding("bytes", pat_str=r"\S+|\s+",
                                   mergeable_ranks={bytes([i]): i for i in range(256)},
                                   special_tokens={})
    monkeypatch.setattr(tiktoken, "get_encoding", lambda name: byte_level)
    sent = []
    recorder = httpx.Client(event_hooks={"request": [lambda r: sent.append(r.read())]})
    embeddings = OpenAIEmbeddings(model="jina-embeddings-v3", base_url=f"{base_url}/v1",
                                  api_key="unused", http_client=recorder)
    text = "A cat sits on the mat."
    vector = embeddings.embed_query(text)
    body = json.loads(sent[0])
    assert isinstance(body["input"][0], list) and isinstance(body["input"][0][0], int)
    assert cosine(vector, jina_reference.embed(text)) < 0.99


@pytest.mark.skipif(shutil.which("java") is None, reason="no JDK on this machine")
def test_java_example(base_url, jina_reference):
    source = ROOT / "examples/java/EmbeddingClient.java"
    assert source.is_file()  # otherwise java reads the path as a class name
    # A UTF-8 locale, or the JVM decodes the Chinese argument into question marks.
    env = {**os.environ, "LC_ALL": "C.UTF-8", "EMBEDDINGS_TASK": "retrieval.query"}
    result = subprocess.run(["java", str(source), f"{base_url}/v1", "你好世界"], env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["model"] == "jina-embeddings-v3"
    want = jina_reference.embed("你好世界", "retrieval.query")
    assert cosine(body["data"][0]["embedding"], want) >= 0.99999


def readme_curl_examples() -> list[str]:
    """Every ```bash block of the README that starts with curl."""
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return [b for b in blocks if b.startswith("curl ")]


def test_readme_has_curl_examples():
    assert len(readme_curl_examples()) >= 4


@pytest.mark.parametrize("example", readme_curl_examples())
def test_readme_curl_examples(base_url, example, request):
    """Rerank examples run on serve_config.rerank.yaml's service, the rest on the shipped."""
    if "rerank" in example:
        base_url = request.getfixturevalue("rerank_service").url
    command = example.replace("http://127.0.0.1:10002", base_url)
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert "error" not in body, body
    assert body


def test_prometheus_metrics_after_traffic(service, base_url):
    for task in ("retrieval.query", "retrieval.query", "classification"):
        httpx.post(f"{base_url}/v1/embeddings", json={"input": ["a", "b c"], "task": task})
    httpx.post(f"{base_url}/v1/embeddings", json={"input": "a", "task": "nope"})
    wanted = {
        "ray_embeddings_inputs_total": {"task": "retrieval.query"},
        "ray_embeddings_tokens_total": {"task": "classification"},
        "ray_embeddings_errors_total": {"status": "400"},
        "ray_embeddings_run_sequences_count": {},
        "ray_embeddings_run_tokens_bucket": {},
        "ray_embeddings_queue_wait_ms_count": {},
        "ray_embeddings_run_ms_sum": {},
    }
    deadline, text = time.monotonic() + 60, ""
    while time.monotonic() < deadline:
        text = scrape(service)
        if all(sample(text, name, **labels) > 0 for name, labels in wanted.items()):
            break
        time.sleep(2)
    missing = [name for name, labels in wanted.items() if sample(text, name, **labels) <= 0]
    assert not missing, f"missing {missing} in:\n" + "\n".join(
        line for line in text.splitlines() if "embeddings" in line)
    assert sample(text, "ray_embeddings_inputs_total", task="retrieval.query") >= 4
    assert 'deployment="Encoder"' in text and 'application="embeddings"' in text
