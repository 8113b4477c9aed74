"""The real application on a plain BERT encoder (all-MiniLM-L6-v2 int8): no tasks, real meaning."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from openai import OpenAI

from tests.reference import cosine

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def base_url(minilm_service):
    return minilm_service.url


def test_vectors_mean_something_and_equal_reference(base_url, minilm_reference):
    client = OpenAI(base_url=f"{base_url}/v1", api_key="unused")
    texts = ["A cat sits on the mat", "A kitten rests on a rug", "The stock market crashed"]
    result = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts)
    assert result.model == "all-MiniLM-L6-v2"
    vectors = np.array([d.embedding for d in result.data])
    assert vectors.shape == (3, 384)
    for vector, text in zip(vectors, texts, strict=True):
        assert cosine(vector, minilm_reference.embed(text)) >= 0.99999
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.4


def test_no_tasks_and_its_own_limit(base_url):
    response = httpx.post(f"{base_url}/v1/embeddings", json={"input": "x", "task": "separation"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "task"
    models = httpx.get(f"{base_url}/v1/models").json()["data"][0]
    assert models["tasks"] == [] and models["max_tokens"] == 512
    response = httpx.post(f"{base_url}/v1/embeddings", json={"input": "word " * 600})
    assert response.status_code == 400
    response = httpx.post(f"{base_url}/v1/embeddings",
                          json={"input": "word " * 600, "truncate": True})
    assert response.json()["usage"]["prompt_tokens"] == 512


def test_two_instances_on_one_host_each_answer_for_themselves(minilm_service, jina_service):
    """Ray fixes its fallback proxy's and direct ingress's ports per host: without ports of
    its own, a second instance's HAProxy sends its requests to the first instance."""
    for service, name in ((minilm_service, "all-MiniLM-L6-v2"),
                          (jina_service, "jina-embeddings-v3")):
        with httpx.Client(timeout=10) as client:
            answers = {client.get(f"{service.url}/v1/models").json()["data"][0]["id"]
                       for _ in range(20)}
        assert answers == {name}, (service.url, answers)
