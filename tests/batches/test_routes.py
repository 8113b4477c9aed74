"""Hostile ids and metadata on the Files and Batches routes: a 4xx in OpenAI's envelope,
never a 500 (the requests a new user tried)."""

import pytest

from tests.clients import assert_envelope, batch_file

HOSTILE_IDS = ["x" * 5000, "file-%00abc"]


@pytest.mark.parametrize("file_id", HOSTILE_IDS, ids=["5000 characters", "NUL byte"])
@pytest.mark.parametrize(("method", "path"), [("GET", "/v1/files/{}"),
                                              ("GET", "/v1/files/{}/content"),
                                              ("DELETE", "/v1/files/{}")])
def test_a_file_id_no_store_can_hold_is_a_404(api, method, path, file_id):
    client, _, _ = api
    assert_envelope(client.request(method, path.format(file_id)), 404, None)


@pytest.mark.parametrize("batch_id", HOSTILE_IDS, ids=["5000 characters", "NUL byte"])
@pytest.mark.parametrize(("method", "path"), [("GET", "/v1/batches/{}"),
                                              ("POST", "/v1/batches/{}/cancel")])
def test_a_batch_id_no_store_can_hold_is_a_404(api, method, path, batch_id):
    client, _, _ = api
    assert_envelope(client.request(method, path.format(batch_id)), 404, None)


@pytest.mark.parametrize(("metadata", "accepted"), [
    ({f"k{i}": "v" for i in range(16)}, True),
    ({f"k{i}": "v" for i in range(17)}, False),
    ({"k" * 64: "v" * 512}, True),
    ({"k" * 65: "v"}, False),
    ({"k": "v" * 513}, False),
], ids=["16 keys", "17 keys", "at the lengths", "65-character key", "513-character value"])
def test_metadata_within_openais_limits(api, metadata, accepted):
    client, _, _ = api
    file = client.post("/v1/files", files={"file": ("in.jsonl", batch_file(1))},
                       data={"purpose": "batch"}).json()
    response = client.post("/v1/batches", json={
        "input_file_id": file["id"], "endpoint": "/v1/embeddings", "completion_window": "24h",
        "metadata": metadata})
    if accepted:
        assert response.status_code == 200 and response.json()["metadata"] == metadata
    else:
        assert_envelope(response, 400, "metadata")
