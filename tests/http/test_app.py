"""The HTTP API in-process (FastAPI + the real scheduler and ONNX, no Ray)."""

import asyncio
import base64
import re

import numpy as np
import pytest

from encoder.ingress.tokenize import TextTokenizer
from tests.bad_inputs import BAD_REQUESTS, ODD_BUT_VALID
from tests.clients import assert_envelope, make_client, vectors
from tests.reference import cosine
from tests.schedulers import make_scheduler


@pytest.fixture(scope="module")
def client(jina_dir):
    return make_client(jina_dir)


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=[c.name for c in BAD_REQUESTS])
def test_bad_request_table(client, case):
    response = client.post("/v1/embeddings", content=case.body,
                           headers={"content-type": case.content_type})
    assert_envelope(response, case.status, case.param)


@pytest.mark.parametrize("text", ODD_BUT_VALID)
def test_odd_but_valid_unicode_embeds(client, jina_reference, text):
    response = client.post("/v1/embeddings", json={"input": text})
    assert response.status_code == 200, response.text
    assert cosine(vectors(response.json())[0], jina_reference.embed(text)) >= 0.99999


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
    # Late chunking refuses on the cheap word count before tokenizing the document...
    words = capped.post("/v1/embeddings", json={"input": ["one two three four"] * 3,
                                                "late_chunking": True})
    assert_envelope(words, 400, "input")
    assert "at least 12 tokens" in words.json()["error"]["message"]
    # ...and on the real count when the words alone do not show it.
    dense = capped.post("/v1/embeddings", json={"input": ["Donaudampfschifffahrt"] * 2,
                                                "late_chunking": True})
    assert_envelope(dense, 400, "input")
    assert "at least" not in dense.json()["error"]["message"]


def test_model_without_tasks_rejects_task(minilm_dir):
    bert = make_client(minilm_dir, served_model_name="all-MiniLM-L6-v2")
    ok = bert.post("/v1/embeddings", json={"input": ["A cat", "A kitten"]}).json()
    assert ok["model"] == "all-MiniLM-L6-v2" and len(ok["data"][0]["embedding"]) == 384
    assert_envelope(bert.post("/v1/embeddings", json={"input": "a", "task": "separation"}),
                    400, "task")


def test_content_types(client):
    for media in ("application/json", "application/json; charset=utf-8",
                  "application/x-www-form-urlencoded", "application/vnd.api+json"):
        response = client.post("/v1/embeddings", content=b'{"input": "hi"}',
                               headers={"content-type": media})
        assert response.status_code == 200, media
    for media in ("text/plain", "multipart/form-data; boundary=x", "application/xml"):
        response = client.post("/v1/embeddings", content=b'{"input": "hi"}',
                               headers={"content-type": media})
        assert_envelope(response, 415, None)


def test_api_key_guards_every_route_but_health(jina_dir):
    guarded = make_client(jina_dir, api_key="s3cret")
    assert guarded.get("/health").status_code == 200
    schema = guarded.app.openapi()["paths"]  # every documented route, from the app itself
    routes = [(method.upper(), re.sub(r"\{[^}]*\}", "x", path))
              for path, operations in schema.items() for method in operations
              if path != "/health"] + [("GET", "/openapi.json"), ("GET", "/docs")]
    assert {("POST", "/v1/rerank"), ("POST", "/v1/classify"), ("POST", "/tokenize")} <= set(
        routes)  # every route the app has, the rerank and classify ones included
    for method, path in routes:
        response = guarded.request(method, path, json={"input": "hi"})
        assert_envelope(response, 401, None)
        assert response.json()["error"]["code"] == "invalid_api_key"
        response = guarded.request(method, path, json={"input": "hi"},
                                   headers={"Authorization": "Bearer wrong"})
        assert response.status_code == 401
    ok = guarded.post("/v1/embeddings", json={"input": "hi"},
                      headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200


def test_slow_encoders_give_a_504(jina_dir):
    async def never(batches):
        await asyncio.sleep(30)

    slow = make_client(jina_dir, embed=never, request_timeout_s=0.2)
    response = slow.post("/v1/embeddings", json={"input": "hi"})
    assert_envelope(response, 504, None)
    assert response.json()["error"]["code"] == "timeout"
    assert "retry-after" in response.headers


def test_binary_embedding_types_follow_dimensions(client, jina_reference):
    text = "binary vectors for a first-pass search"
    want = jina_reference.embed(text, "text-matching", dimensions=32)
    bits = np.packbits(want > 0)
    for kind, expected in (("ubinary", bits), ("binary", bits.astype(np.int16) - 128)):
        response = client.post("/v1/embeddings", json={
            "input": [text], "embedding_type": kind, "dimensions": 32})
        assert response.status_code == 200, response.text
        assert response.json()["data"][0]["embedding"] == expected.tolist()
    for kind, fmt in (("float", None), ("float", "base64"), ("base64", None),
                      ("base64", "base64")):
        body = {"input": text, "embedding_type": kind, "dimensions": 32}
        if fmt:
            body["encoding_format"] = fmt
        data = client.post("/v1/embeddings", json=body).json()["data"][0]["embedding"]
        assert isinstance(data, list) == ((kind, fmt) == ("float", None))
        if isinstance(data, str):
            data = np.frombuffer(base64.b64decode(data), dtype="<f4")
        assert cosine(data, want) >= 0.99999


@pytest.mark.parametrize("kind,fmt", [("binary", "base64"), ("ubinary", "base64"),
                                      ("base64", "float")])
def test_conflicting_output_formats_are_400(client, kind, fmt):
    response = client.post("/v1/embeddings", json={
        "input": "a", "embedding_type": kind, "encoding_format": fmt})
    assert_envelope(response, 400, "encoding_format")
    assert "embedding_type" in response.json()["error"]["message"]


def test_tokenize_reports_ids_tokens_and_offsets(client, jina_dir):
    text = "Hello 世界, tokens!"
    response = client.post("/tokenize", json={"inputs": [text, "a"]})
    assert response.status_code == 200, response.text
    first, second = response.json()
    tokenizer = TextTokenizer(jina_dir)
    assert [t["id"] for t in first] == tokenizer.encode([text], 8192, False)[0]
    assert first[0]["special"] and first[0]["start"] is None and first[-1]["special"]
    for token in first[1:-1]:
        assert not token["special"]
        piece = text[token["start"] : token["stop"]]
        assert piece and piece.strip() in token["text"].replace("▁", " ")
    assert len(second) == 3

    bare = client.post("/tokenize", json={"inputs": text, "add_special_tokens": False}).json()
    assert [t["id"] for t in bare[0]] == [t["id"] for t in first[1:-1]]
    # With a task, the instruction's tokens are counted but point at no character.
    query = client.post("/tokenize", json={"inputs": text, "task": "retrieval.query"}).json()[0]
    embedded = client.post("/v1/embeddings", json={"input": text, "task": "retrieval.query"})
    assert len(query) == embedded.json()["usage"]["prompt_tokens"]
    assert [(t["start"], t["stop"]) for t in query if t["start"] is not None] == [
        (t["start"], t["stop"]) for t in first[1:-1]]


@pytest.mark.parametrize("body,param", [({}, "inputs"), ({"inputs": []}, "inputs"),
                                        ({"inputs": 5}, "inputs"),
                                        ({"inputs": "a", "task": "nope"}, "task"),
                                        ({"inputs": "a", "extra": 1}, "extra")])
def test_tokenize_bad_requests(client, body, param):
    assert_envelope(client.post("/tokenize", json=body), 400, param)


def test_model_retrieve_and_head_probes(client):
    entry = client.get("/v1/models/jina-embeddings-v3")
    assert entry.status_code == 200 and entry.json() == client.get("/v1/models").json()["data"][0]
    for missing in ("/v1/models/gpt-4", "/v1/models/jinaai/jina-embeddings-v3"):
        response = client.get(missing)
        assert_envelope(response, 404, "model")
        assert response.json()["error"]["code"] == "model_not_found"
    for path in ("/health", "/"):
        head = client.head(path)
        assert head.status_code == 200 and head.content == b""


def test_a_document_too_big_for_the_replicas_memory_is_a_413_and_queries_go_on(jina_dir):
    # A replica with no memory to spare: no long input fits, short ones still run.
    client = make_client(jina_dir, embed=make_scheduler(jina_dir, budget=512, memory=1).embed)
    response = client.post("/v1/embeddings", json={"input": ["short", "word " * 1000]})
    assert_envelope(response, 413, "input")
    assert response.json()["error"]["code"] == "input_too_long"
    assert "at most 0 tokens per input" in response.json()["error"]["message"]
    assert client.post("/v1/embeddings", json={"input": "short"}).status_code == 200
