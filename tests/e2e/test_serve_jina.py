"""The real application (serve run serve_config.yaml) on the jina-shaped model, over HTTP."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import random

import httpx
import numpy as np
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from openai import AsyncOpenAI, OpenAI

from encoder.ingress.admission import estimate_tokens
from encoder.settings import ServiceSettings
from tests.bad_inputs import BAD_REQUESTS, ODD_BUT_VALID
from tests.reference import cosine

pytestmark = pytest.mark.e2e

TASKS = ["retrieval.query", "retrieval.passage", "separation", "classification",
         "text-matching"]
TEXTS = [
    "Hello world", "你好，世界", "你好世界", "emoji 🎉😀👍🏽 and text", "Ünïcödé façade",
    "A cat sits on the mat.", "The stock market fell sharply today after the announcement.",
    "def f(x): return x * 2", "Ein kurzer deutscher Satz.", "短い日本語の文です。",
    "a somewhat longer passage about retrieval augmented generation " * 8,
]


@pytest.fixture(scope="module")
def base_url(jina_service):
    return jina_service.url


@pytest.fixture(scope="module")
def openai_client(base_url):
    return OpenAI(base_url=f"{base_url}/v1", api_key="1234")


def test_health_models_and_index(base_url):
    assert httpx.get(f"{base_url}/health").json() == {"status": "ok"}
    models = httpx.get(f"{base_url}/v1/models").json()
    assert models["data"][0]["id"] == "jina-embeddings-v3"
    assert httpx.get(f"{base_url}/").status_code == 200


def test_openai_model_endpoints_and_head_probe(base_url, openai_client):
    assert [m.id for m in openai_client.models.list()] == ["jina-embeddings-v3"]
    assert openai_client.models.retrieve("jina-embeddings-v3").id == "jina-embeddings-v3"
    with pytest.raises(openai.NotFoundError) as missing:
        openai_client.models.retrieve("text-embedding-3-small")
    assert missing.value.code == "model_not_found"
    assert httpx.head(f"{base_url}/health").status_code == 200


def test_gzip_request_body_through_the_proxy(base_url, jina_reference):
    body = json.dumps({"input": TEXTS, "task": "retrieval.query"}).encode()
    response = httpx.post(f"{base_url}/v1/embeddings", content=gzip.compress(body),
                          headers={"content-type": "application/json",
                                   "content-encoding": "gzip"})
    assert response.status_code == 200, response.text
    for item, text in zip(response.json()["data"], TEXTS, strict=True):
        assert cosine(item["embedding"], jina_reference.embed(text, "retrieval.query")) >= 0.99999


def test_curl_shaped_request_from_the_old_readme(base_url, jina_reference):
    """The old server's curl: Chinese text, task field, no model, JSON content type."""
    response = httpx.post(f"{base_url}/v1/embeddings",
                          json={"input": ["Hello world", "你好，世界"], "task": "text-matching"})
    body = response.json()
    assert response.status_code == 200 and body["model"] == "jina-embeddings-v3"
    for item, text in zip(body["data"], ["Hello world", "你好，世界"], strict=True):
        assert cosine(item["embedding"], jina_reference.embed(text, "text-matching")) >= 0.99999


@pytest.mark.parametrize("encoding_format", [None, "float", "base64"])
def test_openai_sdk(openai_client, jina_reference, encoding_format):
    kwargs = {"encoding_format": encoding_format} if encoding_format else {}
    result = openai_client.embeddings.create(model="jina-embeddings-v3", input=TEXTS,
                                             extra_body={"task": "retrieval.passage"},
                                             **kwargs)
    assert result.model == "jina-embeddings-v3" and len(result.data) == len(TEXTS)
    for item, text in zip(result.data, TEXTS, strict=True):
        vector = item.embedding
        if encoding_format == "base64":  # asked for explicitly, the SDK leaves it encoded
            vector = np.frombuffer(base64.b64decode(vector), dtype="<f4")
        assert cosine(vector, jina_reference.embed(text, "retrieval.passage")) >= 0.99999
    expected_tokens = sum(len(jina_reference.ids(t, "retrieval.passage")) for t in TEXTS)
    assert result.usage.prompt_tokens == expected_tokens


def test_openai_sdk_dimensions(openai_client, jina_reference):
    result = openai_client.embeddings.create(model="any", input="你好世界", dimensions=16)
    vector = result.data[0].embedding
    assert len(vector) == 16
    assert cosine(vector, jina_reference.embed("你好世界", "text-matching", 16)) >= 0.99999


def test_concurrent_mixed_tasks_equal_reference(base_url, jina_reference):
    """Many clients at once, mixed tasks, sizes and dims: sharing runs must not change vectors."""
    rng = random.Random(7)
    requests = []
    for _ in range(40):
        texts = rng.sample(TEXTS, rng.randint(1, 6))
        requests.append((texts, rng.choice(TASKS), rng.choice([None, 8, 32, 64])))

    async def send(client, texts, task, dims):
        body = {"input": texts, "task": task}
        if dims:
            body["dimensions"] = dims
        response = await client.post(f"{base_url}/v1/embeddings", json=body)
        return response.status_code, response.json()

    async def run_all():
        async with httpx.AsyncClient(timeout=60) as client:
            return await asyncio.gather(*(send(client, *r) for r in requests))

    for (texts, task, dims), (status, body) in zip(requests, asyncio.run(run_all()),
                                                   strict=True):
        assert status == 200, body
        for item, text in zip(body["data"], texts, strict=True):
            expected = jina_reference.embed(text, task, dims)
            assert len(item["embedding"]) == (dims or 64)
            assert cosine(item["embedding"], expected) >= 0.99999


def test_large_request_is_split_and_kept_in_order(base_url, jina_reference):
    texts = [f"document number {i} " + "filler " * (i % 50) for i in range(600)]
    response = httpx.post(f"{base_url}/v1/embeddings", timeout=120,
                          json={"input": texts, "task": "retrieval.passage"})
    data = response.json()["data"]
    assert [d["index"] for d in data] == list(range(600))
    for i in (0, 1, 299, 598, 599):
        expected = jina_reference.embed(texts[i], "retrieval.passage")
        assert cosine(data[i]["embedding"], expected) >= 0.99999


def test_long_input_400_or_truncated(base_url):
    long_text = "word " * 9000
    response = httpx.post(f"{base_url}/v1/embeddings", json={"input": ["ok", long_text]})
    assert response.status_code == 400
    assert "input[1]" in response.json()["error"]["message"]
    response = httpx.post(f"{base_url}/v1/embeddings",
                          json={"input": long_text, "truncate": True}, timeout=60)
    assert response.status_code == 200
    assert response.json()["usage"]["prompt_tokens"] == 8192


def test_bad_inputs_over_http_leave_good_requests_alone(base_url):
    async def run():
        async with httpx.AsyncClient(timeout=30) as client:
            good = [client.post(f"{base_url}/v1/embeddings", json={"input": "still fine"})
                    for _ in range(5)]
            bad = [client.post(f"{base_url}/v1/embeddings", content=case.body,
                               headers={"content-type": case.content_type})
                   for case in BAD_REQUESTS]
            odd = [client.post(f"{base_url}/v1/embeddings", json={"input": text})
                   for text in ODD_BUT_VALID]
            return await asyncio.gather(*good, *bad, *odd)

    responses = asyncio.run(run())
    good, bad, odd = responses[:5], responses[5 : 5 + len(BAD_REQUESTS)], responses[-14:]
    for response in good + odd:
        assert response.status_code == 200, response.text
    budget = ServiceSettings().max_inflight_tokens
    for case, response in zip(BAD_REQUESTS, bad, strict=True):
        if response.status_code == 429:
            # Sent while others run, a body too big for the admission budget is refused
            # before it is read further (on its size alone); retried, it gets its 400.
            assert estimate_tokens(len(case.body)) > budget, (case.name, response.text)
            continue
        assert response.status_code == case.status, (case.name, response.text)
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}, case.name
        assert error["param"] == case.param, case.name
        assert response.elapsed.total_seconds() < 1.0, case.name


def test_unknown_routes_use_the_envelope(base_url):
    response = httpx.get(f"{base_url}/v1/nothing")
    assert response.status_code == 404 and "error" in response.json()
    response = httpx.get(f"{base_url}/v1/embeddings")
    assert response.status_code == 405 and "error" in response.json()


def test_async_openai_client(base_url, jina_reference):
    async def run():
        client = AsyncOpenAI(base_url=f"{base_url}/v1", api_key="x")
        results = await asyncio.gather(*(
            client.embeddings.create(model="m", input=text) for text in TEXTS[:6]))
        await client.close()
        return results

    for result, text in zip(asyncio.run(run()), TEXTS[:6], strict=True):
        vector = np.array(result.data[0].embedding)
        assert cosine(vector, jina_reference.embed(text, "text-matching")) >= 0.99999


# Requests per operation and mode; the embeddings route, the one with the richest body, gets
# more.
FUZZ_EXAMPLES = {"POST /v1/embeddings": 150}
FUZZ_DEFAULT = 40


def _fuzz(operation, mode: str, base_url: str) -> list[int]:
    """Send ``operation`` its generated requests; the statuses it got."""
    from schemathesis import GenerationMode

    label = f"{operation.method.upper()} {operation.path}"
    statuses: list[int] = []

    @settings(max_examples=FUZZ_EXAMPLES.get(label, FUZZ_DEFAULT), deadline=None,
              database=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=GenerationMode(mode)))
    def check(case) -> None:
        response = case.call(base_url=base_url, timeout=30)
        statuses.append(response.status_code)
        assert response.status_code < 500, (label, case.path_parameters, case.query,
                                            case.body, response.text[:500])
        if response.status_code >= 400 and label != "GET /health":
            assert set(response.json()["error"]) == {"message", "type", "param", "code"}

    try:
        check()
    except Unsatisfiable:  # nothing it takes can be invalid (no body; any string is a name)
        assert mode == "negative", label
    return statuses


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_openapi_fuzzing_of_every_route_never_gets_a_server_error(base_url, mode):
    """Property-based requests for every operation of the served OpenAPI document (bodies,
    query and path parameters), valid and invalid: no 5xx, and every error in OpenAI's
    envelope. A route added later is fuzzed without changing this test."""
    import schemathesis

    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    seen = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        seen[f"{operation.method.upper()} {operation.path}"] = _fuzz(operation, mode, base_url)
    for label, statuses in seen.items():
        print(f"fuzz {mode} {label}: {len(statuses)} requests, statuses "
              f"{ {s: statuses.count(s) for s in sorted(set(statuses))} }")
    assert len(seen) >= 15  # embeddings, tokenize, models, health, files, batches
    if mode == "positive":
        assert all(seen.values()), seen
    else:  # ids have a pattern and lengths (the store's): their routes get invalid ones
        assert all(seen[f"{m} {p}"] for m, p in (("GET", "/v1/files/{file_id}"),
                                                  ("GET", "/v1/batches/{batch_id}"))), seen
