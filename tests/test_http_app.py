"""The HTTP API in-process (FastAPI + the real ONNX pipeline, no Ray)."""

import base64

import numpy as np
import pytest
from fastapi.testclient import TestClient

from encoder.http_app import build_app
from encoder.model_card import ModelCard
from encoder.service import EmbeddingsService, local_embedder
from encoder.settings import ServiceSettings
from encoder.tokenize import TextTokenizer
from tests.bad_inputs import BAD_REQUESTS
from tests.reference import cosine
from tests.test_pipeline import make_pipeline


async def _ready() -> bool:
    return True


def make_client(folder, **overrides) -> TestClient:
    settings = ServiceSettings(model=str(folder), **overrides)
    service = EmbeddingsService(settings, ModelCard.from_folder(folder), TextTokenizer(folder),
                                local_embedder(make_pipeline(folder)))
    return TestClient(build_app(service, _ready))


@pytest.fixture(scope="module")
def client(jina_dir):
    return make_client(jina_dir)


def vectors(body):
    return np.array([d["embedding"] for d in body["data"]], dtype=np.float64)


def assert_envelope(response, status, param):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"] and error["type"]
    assert error["param"] == param


@pytest.mark.parametrize(("name", "body", "status", "param"), BAD_REQUESTS,
                         ids=[c[0] for c in BAD_REQUESTS])
def test_bad_request_table(client, name, body, status, param):
    response = client.post("/v1/embeddings", content=body,
                           headers={"content-type": "application/json"})
    assert_envelope(response, status, param)


def test_float_request_matches_reference(client, jina_reference):
    texts = ["Hello world", "你好，世界", "emoji 😀🎉", "Ünïcödé façade"]
    body = client.post("/v1/embeddings", json={"input": texts}).json()
    assert body["object"] == "list" and body["model"] == "jina-embeddings-v3"
    assert [d["index"] for d in body["data"]] == [0, 1, 2, 3]
    for vector, text in zip(vectors(body), texts, strict=False):
        assert cosine(vector, jina_reference.embed(text, "text-matching")) >= 0.99999
        assert abs(np.linalg.norm(vector) - 1) < 1e-5
    tokens = sum(len(jina_reference.ids(t)) for t in texts)
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}


def test_task_prefix_dimensions_and_base64(client, jina_reference):
    body = client.post("/v1/embeddings", json={
        "input": "what is a cat?", "task": "retrieval.query", "dimensions": 16,
        "encoding_format": "base64"}).json()
    vector = np.frombuffer(base64.b64decode(body["data"][0]["embedding"]), dtype="<f4")
    assert vector.shape == (16,)
    expected = jina_reference.embed("what is a cat?", "retrieval.query", dimensions=16)
    assert cosine(vector, expected) >= 0.99999
    # The instruction prefix is part of what the model saw, and of the token count.
    assert body["usage"]["prompt_tokens"] == len(jina_reference.ids("what is a cat?",
                                                                     "retrieval.query"))
    plain = jina_reference.embed("what is a cat?", "text-matching", dimensions=16)
    assert cosine(vector, plain) < 0.999


def test_unnormalized(client, jina_reference):
    body = client.post("/v1/embeddings", json={"input": "abc", "normalized": False}).json()
    raw = jina_reference.embed("abc", "text-matching", normalized=False)
    np.testing.assert_allclose(vectors(body)[0], raw, rtol=1e-4, atol=1e-6)


def test_truncate_and_old_max_length(client):
    long_text = "word " * 9000
    body = client.post("/v1/embeddings", json={"input": long_text, "truncate": True}).json()
    assert body["usage"]["prompt_tokens"] == 8192
    body = client.post("/v1/embeddings", json={"input": long_text, "max_length": 512}).json()
    assert body["usage"]["prompt_tokens"] == 512
    response = client.post("/v1/embeddings",
                           json={"input": long_text, "max_length": 512, "truncate": False})
    assert_envelope(response, 400, "input")
    assert "512" in response.json()["error"]["message"]


def test_token_id_inputs_are_used_as_given(client, jina_reference):
    ids = jina_reference.ids("Hello world")
    body = client.post("/v1/embeddings", json={"input": [ids, ids[:3]]}).json()
    got = vectors(body)
    assert cosine(got[0], jina_reference.embed("Hello world")) >= 0.99999
    assert body["usage"]["prompt_tokens"] == len(ids) + 3


def test_any_content_type_and_alias_path(client):
    response = client.post("/embeddings", content=b'{"input": "hi"}',
                           headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200


def test_models_health_index_and_unknown_routes(client):
    models = client.get("/v1/models").json()
    entry = models["data"][0]
    assert models["object"] == "list" and entry["id"] == "jina-embeddings-v3"
    assert entry["max_tokens"] == 8192 and entry["matryoshka_dimensions"] == [8, 16, 32, 64]
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/").status_code == 200
    assert_envelope(client.get("/nope"), 404, None)
    assert_envelope(client.get("/v1/embeddings"), 405, None)
    schema = client.get("/openapi.json").json()
    assert "EmbeddingRequest" in schema["components"]["schemas"]


def test_body_over_limit_is_413(jina_dir):
    small = make_client(jina_dir, max_body_bytes=2048)
    response = small.post("/v1/embeddings", json={"input": "x" * 4096})
    assert_envelope(response, 413, None)


def test_request_token_cap(jina_dir):
    capped = make_client(jina_dir, max_request_tokens=10)
    assert_envelope(capped.post("/v1/embeddings", json={"input": ["one two three"] * 3}),
                    400, "input")


def test_model_without_tasks_rejects_task(minilm_dir):
    bert = make_client(minilm_dir, served_model_name="all-MiniLM-L6-v2")
    ok = bert.post("/v1/embeddings", json={"input": ["A cat", "A kitten"]}).json()
    assert ok["model"] == "all-MiniLM-L6-v2" and len(ok["data"][0]["embedding"]) == 384
    assert_envelope(bert.post("/v1/embeddings", json={"input": "a", "task": "separation"}),
                    400, "task")
