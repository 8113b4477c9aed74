"""Several models in one Serve application (serve_config.rerank.yaml): jina-tiny's embeddings
beside two rerankers, over HTTP with real clients. Scores equal a per-pair reference run of
the same ONNX (|Δ| ≤ 1e-5) through the Cohere SDK's v1 and v2 clients, TEI's route, several
clients at once and long documents; one model's overload is that model's alone."""

from __future__ import annotations

import asyncio
import random

import cohere
import httpx
import numpy as np
import pytest

from tests.clients import sample, scrape
from tests.e2e.conftest import BERT_RERANKER, RERANKER

pytestmark = pytest.mark.e2e

QUERY = "Which city is the capital of Germany?"
DOCUMENTS = ["Berlin is the capital of Germany.", "Paris is the capital of France.",
             "Die Hauptstadt Deutschlands ist Berlin.", "柏林是德国的首都。",
             "Cats sleep for most of the day.", "The stock market closed higher.",
             "An essay on the history of capitals. " * 200]


@pytest.fixture(scope="module")
def expected(reranker_reference) -> list[float]:
    return [reranker_reference.score(QUERY, d) for d in DOCUMENTS]


def ranked(scores: list[float], top_n: int | None = None) -> list[int]:
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    return order[:top_n] if top_n else order


def test_cohere_sdk_v1_rerank(rerank_service, expected):
    client = cohere.Client(base_url=rerank_service.url, api_key="unused")
    response = client.rerank(model=RERANKER, query=QUERY, documents=DOCUMENTS, top_n=3,
                             return_documents=True)
    assert [r.index for r in response.results] == ranked(expected, 3)
    for result in response.results:
        assert abs(result.relevance_score - expected[result.index]) <= 1e-5
        assert result.document.text == DOCUMENTS[result.index]


def test_cohere_sdk_v2_rerank_by_alias(rerank_service, expected):
    client = cohere.ClientV2(base_url=rerank_service.url, api_key="unused")
    response = client.rerank(model="jina-reranker-v2", query=QUERY, documents=DOCUMENTS,
                             top_n=2)
    assert [r.index for r in response.results] == ranked(expected, 2)
    for result in response.results:
        assert abs(result.relevance_score - expected[result.index]) <= 1e-5


def test_a_bert_cross_encoder_with_token_types(rerank_service, bert_cross_encoder_reference):
    body = httpx.post(f"{rerank_service.url}/v1/rerank", timeout=60, json={
        "model": BERT_RERANKER, "query": QUERY, "documents": DOCUMENTS}).json()
    want = [bert_cross_encoder_reference.score(QUERY, d) for d in DOCUMENTS]
    assert [r["index"] for r in body["results"]] == ranked(want)
    for result in body["results"]:
        assert abs(result["relevance_score"] - want[result["index"]]) <= 1e-5


def test_many_clients_at_once_get_the_references_scores(rerank_service, reranker_reference):
    """Mixed requests from 24 clients at once: their pairs share runs (and the long queue,
    for the long documents' windows), and every score stays the per-pair reference's."""
    rng = random.Random(5)
    requests = [(rng.choice([QUERY, "cats", "markets today"]),
                 rng.sample(DOCUMENTS, rng.randint(1, len(DOCUMENTS)))) for _ in range(24)]

    async def send(client, query, documents):
        response = await client.post(f"{rerank_service.url}/v1/rerank", json={
            "model": RERANKER, "query": query, "documents": documents,
            "return_documents": False})
        return response.status_code, response.json()

    async def run_all():
        async with httpx.AsyncClient(timeout=120) as client:
            return await asyncio.gather(*(send(client, q, d) for q, d in requests))

    for (query, documents), (status, body) in zip(requests, asyncio.run(run_all()),
                                                  strict=True):
        assert status == 200, body
        for result in body["results"]:
            want = reranker_reference.score(query, documents[result["index"]])
            assert abs(result["relevance_score"] - want) <= 1e-5


def test_tei_route_raw_scores_and_texts(rerank_service, reranker_reference):
    body = httpx.post(f"{rerank_service.url}/rerank", timeout=60, json={
        "query": QUERY, "texts": DOCUMENTS[:3], "raw_scores": True,
        "return_text": True}).json()
    for result in body:
        want = reranker_reference.score(QUERY, DOCUMENTS[result["index"]], raw=True)
        assert abs(result["score"] - want) <= 1e-5
        assert result["text"] == DOCUMENTS[result["index"]]


def test_models_lists_every_model_with_what_it_does(rerank_service):
    models = {m["id"]: m["kind"] for m in
              httpx.get(f"{rerank_service.url}/v1/models").json()["data"]}
    assert models == {"jina-embeddings-v3": "embeddings", RERANKER: "rerank",
                      BERT_RERANKER: "rerank"}
    wrong = httpx.post(f"{rerank_service.url}/v1/embeddings",
                       json={"model": RERANKER, "input": "a"})
    assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "wrong_model_kind"
    unknown = httpx.post(f"{rerank_service.url}/v1/embeddings",
                         json={"model": "text-embedding-3-small", "input": "a"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"


def test_one_models_overload_leaves_the_other_answering(rerank_service):
    """A burst of big rerank requests past the reranker's admission budget gets 429s;
    embeddings requests sent meanwhile all answer 200."""
    documents = [f"document {i} " + "about reranking under load " * 25 for i in range(200)]

    async def burst():
        async with httpx.AsyncClient(timeout=120) as client:
            rerank = [client.post(f"{rerank_service.url}/v1/rerank", json={
                "model": RERANKER, "query": "load", "documents": documents,
                "return_documents": False}) for _ in range(12)]
            embed = [client.post(f"{rerank_service.url}/v1/embeddings", json={
                "model": "jina-embeddings-v3", "input": f"query {i}"}) for i in range(12)]
            return await asyncio.gather(*rerank, *embed)

    responses = asyncio.run(burst())
    reranks, embeds = responses[:12], responses[12:]
    assert {r.status_code for r in reranks} <= {200, 429} and any(
        r.status_code == 429 for r in reranks), [r.status_code for r in reranks]
    assert [r.status_code for r in embeds] == [200] * 12


def test_metrics_are_labelled_by_model(rerank_service):
    httpx.post(f"{rerank_service.url}/v1/rerank", json={"model": RERANKER, "query": "q",
                                                        "documents": ["a", "b"]})
    deadline, text = 60, ""
    for _ in range(deadline // 2):
        text = scrape(rerank_service)
        if sample(text, "ray_embeddings_inputs_total", model=RERANKER, task="rerank") > 0:
            break
        asyncio.run(asyncio.sleep(2))
    assert sample(text, "ray_embeddings_inputs_total", model=RERANKER, task="rerank") > 0
    assert sample(text, "ray_embeddings_run_sequences_count", model=RERANKER) > 0
    assert np.isfinite(sample(text, "ray_embeddings_run_ms_sum", model=BERT_RERANKER))
