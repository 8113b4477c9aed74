"""jina-v3's real graph (``../shared``, random weights) served as shipped, over HTTP.

The service serves its prepared copy of the export (LoRA on activations, fused rotary and
attention); every vector must equal the unmodified export's, run one text at a time by
``tests/reference.py``, to cosine 0.99999: all five tasks, a batch of mixed lengths,
``dimensions`` and late chunking. The same check fails against another task's vectors and
against unmasked padding, so it can see those mistakes on these random weights. A document
at the graph's limit (8194 tokens: its rotary caches' rows) is answered and one token more
is a 400; probes answer fast meanwhile; a client that gives up on a document ends its run
within seconds. The Encoder replica stays within its memory budget throughout. Fails where
``../shared`` is absent (``JINA_V3_GRAPH=skip`` skips it knowingly).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from encoder.model.prepare import external_data
from jina_serve.config import load_config
from tests.marked_processes import idle_after, memory_mb
from tests.reference import ReferenceEncoder, cosine, finish_reference, late_chunk_reference
from tests.serve_process import ROOT, abandon, serve_run

# Starting (preparing a 2.3 GB graph) and one 8194-token run each take minutes on 2 cores:
# each wait below ends before pytest's own timeout, so it says what it waited for.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1000)]

TASKS = ["retrieval.query", "retrieval.passage", "separation", "classification",
         "text-matching"]
MIXED = ["Hello world", "你好，世界", "a somewhat longer passage about retrieval " * 30,
         "A cat sits on the mat.", "短い日本語の文です。"]


@pytest.fixture(scope="module")
def service(jina_v3_dir, tmp_path_factory):
    # The shipped CPU shares (2 ORT threads, parallel runs): what a user gets.
    with serve_run(jina_v3_dir, tmp_path_factory.mktemp("serve-jina-v3"), cpus=None,
                   timeout_s=450) as running:
        yield running


@pytest.fixture(scope="module")
def document_sent(service) -> Iterator[Future]:
    """One document at the graph's limit, sent as the module starts: it runs on the long
    queue while the tests of vectors send their queries beside it, as a user's would."""
    def send() -> tuple[httpx.Response, float]:
        started = time.monotonic()
        response = httpx.post(f"{service.url}/v1/embeddings", json=document(8194),
                              timeout=450)
        return response, time.monotonic() - started

    with ThreadPoolExecutor(1) as pool:
        yield pool.submit(send)


@pytest.fixture(scope="module")
def reference(jina_v3_dir):
    return ReferenceEncoder(jina_v3_dir)


def test_probes_answer_fast_while_the_encoder_is_saturated(service, document_sent):
    """A Kubernetes probe (1 s timeout) must not restart a pod because it is busy: /health
    and /v1/models answer fast while the 8194-token document holds the full session and
    clients keep the parallel one busy with queries."""
    stop = threading.Event()
    statuses: list[int | str] = []

    def client() -> None:
        with httpx.Client(timeout=120) as http:
            while not stop.is_set():
                try:
                    response = http.post(f"{service.url}/v1/embeddings",
                                         json={"input": MIXED[:2], "task": "retrieval.query"})
                except httpx.HTTPError as exc:
                    statuses.append(type(exc).__name__)
                    continue
                statuses.append(response.status_code)
                if response.status_code == 429:  # as the openai SDK does
                    time.sleep(float(response.headers.get("retry-after", 1)))

    probes: dict[str, list[float]] = {"/health": [], "/v1/models": []}
    failures: list[str] = []  # asserted here: a failure in a thread is only a warning
    clients = [threading.Thread(target=client) for _ in range(3)]
    for thread in clients:
        thread.start()
    with httpx.Client(timeout=10) as http:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for path, samples in probes.items():
                start = time.perf_counter()
                try:
                    status = http.get(f"{service.url}{path}").status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                samples.append(time.perf_counter() - start)
                if status != 200:
                    failures.append(f"{path}: {status}")
            time.sleep(0.1)
    assert not document_sent.done(), "the document ended before the probes: no load measured"
    stop.set()
    for thread in clients:
        thread.join(timeout=120)
    assert not failures, failures
    assert statuses.count(200) >= 4 and set(statuses) <= {200, 429}, statuses
    for path, samples in probes.items():
        ms = np.array(samples) * 1000
        print(f"{path}: {len(ms)} probes, p50 {np.percentile(ms, 50):.0f} ms, "
              f"max {ms.max():.0f} ms; queries: {statuses.count(200)} x 200")
        assert len(ms) >= 30
        assert np.percentile(ms, 50) <= 100 and ms.max() <= 1000, (path, sorted(ms)[-5:])


def embed(service, **body) -> list[np.ndarray]:
    response = httpx.post(f"{service.url}/v1/embeddings", json=body, timeout=120)
    assert response.status_code == 200, response.text
    return [np.array(d["embedding"]) for d in response.json()["data"]]


FIDELITY = 0.99999


@pytest.mark.parametrize("task", TASKS)
def test_every_task_gives_the_exports_vectors(service, reference, document_sent, task):
    """Each task's vectors equal the export's for that task, and fail the same check
    against every other task's: the check can tell the tasks apart on these weights."""
    text = "What is a kitten? 你好世界"  # one text, two scripts: a run of the export each
    [vector] = embed(service, input=[text], task=task)
    assert cosine(vector, reference.embed(text, task)) >= FIDELITY
    for other in TASKS:
        if other != task:
            assert cosine(vector, reference.embed(text, other)) < FIDELITY, other


def test_a_padded_batch_of_mixed_lengths_with_dimensions(service, reference, document_sent):
    """Padded runs give each text's own vector; the same check fails for the shortest text's
    vector computed with its padding unmasked, so it can see a mask lost on the way."""
    vectors = embed(service, input=MIXED, task="retrieval.passage", dimensions=256)
    ids = [reference.ids(text, "retrieval.passage") for text in MIXED]
    for sequence, vector in zip(ids, vectors, strict=True):
        assert len(vector) == 256
        expected = finish_reference(reference.embed_ids(sequence, "retrieval.passage"), 256,
                                    True)
        assert cosine(vector, expected) >= FIDELITY
    shortest = min(range(len(ids)), key=lambda i: len(ids[i]))
    padded = ids[shortest] + [reference.config["pad_token_id"]] * (
        max(map(len, ids)) - len(ids[shortest]))
    unmasked = finish_reference(reference.embed_ids(padded, "retrieval.passage"), 256, True)
    assert cosine(vectors[shortest], unmasked) < FIDELITY


def test_late_chunking_gives_the_exports_chunk_vectors(service, reference, document_sent):
    chunks = ["Berlin is the capital of Germany.", "Its population is 3.85 million.",
              "It lies on the Spree."]
    vectors = embed(service, input=chunks, task="retrieval.passage", late_chunking=True)
    for vector, expected in zip(vectors, late_chunk_reference(reference, chunks,
                                                              "retrieval.passage"), strict=True):
        assert cosine(vector, expected) >= FIDELITY


def document(tokens: int) -> dict:
    """One document of ``tokens`` token ids (XLM-R's <s> ... </s> around them)."""
    return {"input": [[0, *(5 + i % 1000 for i in range(tokens - 2)), 2]],
            "task": "retrieval.passage"}


@pytest.fixture(scope="module")
def longest_document(document_sent) -> tuple[httpx.Response, float]:
    """The document at the graph's limit, answered: its response and seconds. The longest
    run the replica makes."""
    return document_sent.result(timeout=450)


def test_a_document_at_the_graphs_limit_is_answered(longest_document):
    response, seconds = longest_document
    assert response.status_code == 200, response.text
    vector = np.array(response.json()["data"][0]["embedding"])
    assert np.isfinite(vector).all() and abs(np.linalg.norm(vector) - 1) < 1e-5
    print(f"8194 tokens in {seconds:.1f} s")


def test_one_token_past_the_limit_is_a_400_before_any_work(service):
    response = httpx.post(f"{service.url}/v1/embeddings", json=document(8195), timeout=30)
    assert response.status_code == 400
    assert "8194" in response.json()["error"]["message"]


def test_a_document_whose_client_gives_up_stops_within_seconds(service, longest_document):
    # After the module's long document (longest_document waits for it): the encoder can go idle.
    pid = service.replica_pid()
    body = json.dumps(document(8000)).encode()
    start = time.monotonic()
    assert asyncio.run(abandon(service.url, body, give_up_s=2.0)) == "gave up"
    stopped = idle_after(pid, start, limit_s=30)
    assert stopped - 2.0 <= 5.0, f"the encoder was busy {stopped - 2.0:.1f} s after the client left"
    response = httpx.post(f"{service.url}/v1/embeddings", json={"input": "hi"}, timeout=30)
    assert response.status_code == 200


def test_the_encoder_replica_stays_within_its_memory_budget(service, jina_v3_dir,
                                                          longest_document):
    """Within 2x the fp32 weights and what serve_config.yaml declares to Ray, at the peak
    since the replica started: loading, preparing and an 8194-token document (the fixture
    runs it, whatever ran before) included."""
    assert longest_document[0].status_code == 200
    onnx = jina_v3_dir / "onnx/model.onnx"
    weights = sum(p.stat().st_size for p in [onnx, *external_data(onnx)])
    deployments = load_config(ROOT / "serve_config.yaml")["applications"][0]["deployments"]
    declared = next(d for d in deployments if d["name"] == "Encoder")["ray_actor_options"]
    peak = memory_mb(service.replica_pid())["peak_rss"] * 2**20
    assert peak <= min(2 * weights, declared["memory"]), (peak, weights)
