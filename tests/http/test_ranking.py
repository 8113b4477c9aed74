"""The rerank and classify routes in-process, beside embeddings in one app: every shape, its
ordering, top_n and documents, routing by model name and alias, and bad input as 4xx."""

import numpy as np
import pytest
from fastapi.testclient import TestClient

from encoder.http.app import build_app
from encoder.ingress.classify import LOGIT_SCALE
from encoder.ingress.models import ModelRouter
from encoder.ingress.rerank import RerankService
from encoder.ingress.service import EmbeddingsService
from encoder.model.card import ModelCard
from encoder.settings import ModelSettings, ServiceSettings
from tests.clients import assert_envelope, ready, tokenizer_of
from tests.reference import cosine
from tests.schedulers import make_scheduler

QUERY = "Which city is the capital of Germany?"
DOCUMENTS = ["Berlin is the capital of Germany.", "Paris is in France.", "Cats sleep a lot.",
             {"text": "Die Hauptstadt Deutschlands ist Berlin."}]
TEXTS = [d if isinstance(d, str) else d["text"] for d in DOCUMENTS]


@pytest.fixture(scope="module")
def app(jina_dir, reranker_dir) -> TestClient:
    """jina-tiny (embeddings) and the tiny reranker (as "reranker", alias "rr") in one app."""
    extra = ModelSettings(model=str(reranker_dir), served_model_name="reranker",
                          aliases=("rr",), deployment="Reranker")
    settings = ServiceSettings(model=str(jina_dir), extra_models=(extra,))
    embeddings = EmbeddingsService(settings, ModelCard.from_folder(jina_dir),
                                   tokenizer_of(jina_dir), make_scheduler(jina_dir).embed)
    reranker = RerankService(settings, extra, ModelCard.from_folder(reranker_dir),
                             tokenizer_of(reranker_dir), make_scheduler(reranker_dir).embed)
    return TestClient(build_app(ModelRouter(settings, [embeddings, reranker]), ready))


@pytest.fixture(scope="module")
def expected(reranker_reference) -> list[float]:
    return [reranker_reference.score(QUERY, text) for text in TEXTS]


def test_jina_and_cohere_v1_shape_sorted_with_documents(app, expected):
    body = app.post("/v1/rerank", json={"model": "reranker", "query": QUERY,
                                        "documents": DOCUMENTS, "top_n": 3}).json()
    assert body["model"] == "reranker" and body["usage"]["total_tokens"] > 0
    order = sorted(range(len(TEXTS)), key=lambda i: -expected[i])[:3]
    assert [r["index"] for r in body["results"]] == order
    for result in body["results"]:
        assert result["relevance_score"] == pytest.approx(expected[result["index"]], abs=1e-5)
        assert result["document"] == {"text": TEXTS[result["index"]]}
    bare = app.post("/v1/rerank", json={"model": "rr", "query": QUERY, "documents": TEXTS,
                                        "return_documents": False}).json()
    assert len(bare["results"]) == 4 and "document" not in bare["results"][0]


def test_cohere_v2_and_tei_shapes(app, expected, reranker_reference):
    v2 = app.post("/v2/rerank", json={"model": "reranker", "query": QUERY,
                                      "documents": TEXTS, "top_n": 2}).json()
    assert [r["index"] for r in v2["results"]] == sorted(range(4), key=lambda i: -expected[i])[:2]
    assert set(v2["results"][0]) == {"index", "relevance_score"} and v2["id"]
    tei = app.post("/rerank", json={"query": QUERY, "texts": TEXTS, "raw_scores": True,
                                    "return_text": True}).json()
    assert [r["index"] for r in tei] == sorted(range(4), key=lambda i: -expected[i])
    for result in tei:
        raw = reranker_reference.score(QUERY, TEXTS[result["index"]], raw=True)
        assert result["score"] == pytest.approx(raw, abs=1e-5)
        assert result["text"] == TEXTS[result["index"]]


def test_relevant_spans_may_be_disabled(app):
    body = app.post("/v2/rerank", json={"query": QUERY, "documents": TEXTS[:2], "top_n": 2,
                                        "relevant_spans": {"mode": "disabled"}}).json()
    assert sorted(r["index"] for r in body["results"]) == [0, 1]


def test_classify_scores_are_a_softmax_of_the_reference_cosines(app, jina_reference):
    inputs, labels = ["A kitten sleeps.", "Stocks fell sharply."], ["animals", "finance"]
    body = app.post("/v1/classify", json={"model": "jina-embeddings-v3", "input": inputs,
                                          "labels": labels}).json()
    for item, text in zip(body["data"], inputs, strict=True):
        vector = jina_reference.embed(text, "classification")
        cosines = np.array([cosine(vector, jina_reference.embed(label, "classification"))
                            for label in labels])
        want = np.exp(LOGIT_SCALE * (cosines - cosines.max()))
        want /= want.sum()
        got = [p["score"] for p in item["predictions"]]
        np.testing.assert_allclose(got, want, atol=1e-4)
        assert item["prediction"] == labels[int(np.argmax(want))]
        assert item["score"] == pytest.approx(max(want), abs=1e-4)
    assert body["usage"]["total_tokens"] > 0
    again = app.post("/v1/classify", json={"input": inputs, "labels": labels}).json()
    assert again["data"] == body["data"]  # label vectors from the cache: the same scores
    assert 0 < again["usage"]["total_tokens"] < body["usage"]["total_tokens"]


def test_models_lists_both_with_what_they_do(app):
    models = {m["id"]: m for m in app.get("/v1/models").json()["data"]}
    assert models["jina-embeddings-v3"]["kind"] == "embeddings"
    assert models["reranker"]["kind"] == "rerank" and models["reranker"]["aliases"] == ["rr"]
    assert app.get("/v1/models/rr").json()["id"] == "reranker"


@pytest.mark.parametrize(("path", "body", "status", "param"), [
    ("/v1/rerank", {"query": "", "documents": ["a"]}, 400, "query"),
    ("/v1/rerank", {"query": "q", "documents": []}, 400, "documents"),
    ("/v1/rerank", {"query": "q", "documents": ["a"], "top_n": 0}, 400, "top_n"),
    ("/v1/rerank", {"query": "q", "documents": ["a"], "top_n": 2}, 400, "top_n"),
    ("/v2/rerank", {"query": "q", "documents": ["a"], "relevant_spans": {"mode": "enabled"}},
     400, "relevant_spans"),
    ("/v1/rerank", {"query": "q", "documents": [3]}, 400, "documents"),
    ("/v1/rerank", {"query": "q", "documents": [{"title": "no text"}]}, 400, "documents"),
    ("/v1/rerank", {"query": "q", "documents": ["a"] * 2049}, 400, "documents"),
    ("/v1/rerank", {"query": "q", "documents": ["word " * 70_000] * 5}, 400, "input"),
    ("/v1/rerank", {"model": "jina-embeddings-v3", "query": "q", "documents": ["a"]}, 400,
     "model"),
    ("/v1/rerank", {"model": "nope", "query": "q", "documents": ["a"]}, 404, "model"),
    ("/v1/embeddings", {"model": "reranker", "input": "a"}, 400, "model"),
    ("/v1/embeddings", {"model": "nope", "input": "a"}, 404, "model"),
    ("/v1/classify", {"input": ["a"]}, 400, "labels"),
    ("/v1/classify", {"input": ["a"], "labels": []}, 400, "labels"),
    ("/v1/classify", {"input": ["a"], "labels": ["x", "x"]}, 400, "labels"),
    ("/v1/classify", {"input": [], "labels": ["x"]}, 400, "input"),
    ("/v1/classify", {"model": "reranker", "input": ["a"], "labels": ["x"]}, 400, "model"),
    ("/rerank", {"query": "q"}, 400, "texts"),
])
def test_bad_input_is_a_4xx_in_the_envelope(app, path, body, status, param):
    assert_envelope(app.post(path, json=body), status, param)
