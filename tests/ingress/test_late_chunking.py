"""Late chunking: planning (token ownership, windows) and vectors against a literal reference."""

import numpy as np
import pytest

from encoder.errors import EmbeddingError
from encoder.ingress.late_chunking import _windows, combine_pieces, plan_late_chunks
from encoder.ingress.tokenize import TextTokenizer
from tests.clients import make_client, vectors
from tests.reference import cosine, finish_reference, late_chunk_reference

CHUNKS = ["Berlin is the capital of Germany.", "Its population is 3.85 million.",
          "它是德国最大的城市。", "The city is also a state."]
PREFIX = "Represent the document for retrieval: "


@pytest.fixture(scope="module")
def tokenizer(jina_dir):
    return TextTokenizer(jina_dir)


@pytest.fixture(scope="module")
def client(jina_dir):
    return make_client(jina_dir)


def test_every_chunk_token_is_owned_once_and_prefix_specials_are_not(tokenizer):
    plan = plan_late_chunks(tokenizer, CHUNKS, PREFIX, window=8192, overlap=512)
    (window,), (spans,) = plan.windows, plan.spans
    assert window[0] == 0 and window[-1] == 2  # <s> ... </s>
    prefix_tokens = len(tokenizer.content_with_offsets(PREFIX.rstrip())[0])
    assert spans[0][0] == 1 + prefix_tokens  # the instruction belongs to no chunk
    assert list(plan.piece_chunk) == [0, 1, 2, 3]
    assert (spans[1:, 0] >= spans[:-1, 1]).all()
    # Between chunks at most the joining space's own token ("▁" before CJK text).
    assert (spans[1:, 0] - spans[:-1, 1] <= 1).all()
    assert spans[-1][1] == len(window) - 1
    assert plan.tokens == len(window)
    for (start, end), chunk in zip(spans, CHUNKS, strict=True):
        ids = [int(i) for i in window[start:end]]
        alone = tokenizer.encode([chunk], 8192, False)[0][1:-1]
        assert alone[-len(ids):] == ids and len(alone) - len(ids) <= 1


@pytest.mark.parametrize("tokens,capacity,overlap", [(10, 10, 4), (11, 10, 4), (100, 10, 4),
                                                     (57, 16, 5), (30, 8, 0)])
def test_windows_tile_the_document(tokens, capacity, overlap):
    windows = _windows(tokens, capacity, overlap)
    assert windows[0][0] == 0 and windows[-1][1] == tokens
    owned = [i for _, _, own_start, own_stop in windows for i in range(own_start, own_stop)]
    assert owned == list(range(tokens))  # each token's state comes from exactly one window
    for start, stop, own_start, own_stop in windows:
        assert stop - start <= capacity and start <= own_start < own_stop <= stop


def test_combine_weights_pieces_by_tokens(tokenizer):
    plan = plan_late_chunks(tokenizer, ["a b c d e f g h i j k l"], "", window=8, overlap=2)
    pieces = np.arange(len(plan.piece_chunk), dtype=np.float32)[:, None] * np.ones((1, 3))
    weights = plan.piece_tokens
    expected = (weights * np.arange(len(weights))).sum() / weights.sum()
    assert np.allclose(combine_pieces(plan, pieces)[0], expected)


@pytest.mark.parametrize("task", ["retrieval.passage", "text-matching"])
def test_vectors_match_the_literal_reference(client, jina_reference, task):
    response = client.post("/v1/embeddings",
                           json={"input": CHUNKS, "task": task, "late_chunking": True})
    assert response.status_code == 200, response.text
    body = response.json()
    expected = late_chunk_reference(jina_reference, CHUNKS, task)
    assert [d["index"] for d in body["data"]] == [0, 1, 2, 3]
    for got, want in zip(vectors(body), expected, strict=True):
        assert cosine(got, finish_reference(want, None, True)) >= 0.99999
    # Context matters: a late chunk is not the chunk embedded on its own.
    alone = client.post("/v1/embeddings", json={"input": CHUNKS, "task": task}).json()
    assert cosine(vectors(body)[1], vectors(alone)[1]) < 0.9999


@pytest.mark.parametrize("window", [12, 16, 40])
def test_long_documents_use_overlapping_windows(jina_dir, jina_reference, window):
    client = make_client(jina_dir, late_chunking_overlap=6)
    response = client.post("/v1/embeddings", json={
        "input": CHUNKS, "late_chunking": True, "max_length": window, "dimensions": 32})
    assert response.status_code == 200, response.text
    # The overlap is capped at half a window, so that windows advance.
    overlap = min(6, (window - 2) // 2)
    expected = late_chunk_reference(jina_reference, CHUNKS, "text-matching", window, overlap)
    for got, want in zip(vectors(response.json()), expected, strict=True):
        assert len(got) == 32
        assert cosine(got, finish_reference(want, 32, True)) >= 0.99999


def test_late_chunking_errors(client):
    cases = [({"input": [[1, 2, 3]], "late_chunking": True}, "late_chunking"),
             ({"input": ["a", ""], "late_chunking": True}, "input"),
             ({"input": ["a"], "late_chunking": True, "max_length": 3}, "max_length"),
             ({"input": ["a"], "late_chunking": "yes"}, "late_chunking")]
    for body, param in cases:
        response = client.post("/v1/embeddings", json=body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"]["param"] == param


def test_chunk_without_tokens_is_named(tokenizer):
    with pytest.raises(EmbeddingError) as info:
        plan_late_chunks(tokenizer, ["hello", " ", "world"], "", window=64, overlap=0)
    assert "input[1]" in info.value.message
