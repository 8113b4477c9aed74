"""Every Files and Batches response conforms to OpenAI's published schema.

The schemas are OpenAI's own (``tests/batches/openai_schemas.json``: the ``components.schemas`` of
``openapi.yaml`` in ``openai/openai-openapi``, commit and date noted there), OpenAPI 3.1, i.e.
JSON Schema 2020-12: a field not marked nullable must be absent or of its type, never null.
The routes run in-process over HTTP (FastAPI's test client) with the real store and runner,
through every state a batch can end in.
"""

import json
from pathlib import Path

from jsonschema import Draft202012Validator

from tests.clients import batch_file

OPENAI = json.loads((Path(__file__).parent / "openai_schemas.json").read_text())


def conforms(body: dict, schema: str) -> None:
    validator = Draft202012Validator({"$ref": f"#/components/schemas/{schema}",
                                      "components": {"schemas": OPENAI["schemas"]}})
    problems = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                for e in validator.iter_errors(body)]
    assert not problems, (schema, problems, body)


def upload(client, data: bytes) -> dict:
    response = client.post("/v1/files", files={"file": ("in.jsonl", data)},
                           data={"purpose": "batch"})
    assert response.status_code == 200, response.text
    conforms(response.json(), "OpenAIFile")
    return response.json()


def create(client, file_id: str) -> dict:
    response = client.post("/v1/batches", json={"input_file_id": file_id, "endpoint":
                                                "/v1/embeddings", "completion_window": "24h"})
    assert response.status_code == 200, response.text
    conforms(response.json(), "Batch")
    return response.json()


def test_files_routes_conform(api):
    client, _, _ = api
    empty = client.get("/v1/files").json()
    conforms(empty, "ListFilesResponse")
    files = [upload(client, batch_file(2)) for _ in range(3)]
    conforms(client.get(f"/v1/files/{files[0]['id']}").json(), "OpenAIFile")
    first = client.get("/v1/files", params={"limit": 2}).json()
    conforms(first, "ListFilesResponse")
    assert [f["id"] for f in first["data"]] == [files[2]["id"], files[1]["id"]]
    assert first["has_more"] and first["last_id"] == files[1]["id"]
    rest = client.get("/v1/files", params={"limit": 2, "after": first["last_id"]}).json()
    conforms(rest, "ListFilesResponse")
    assert [f["id"] for f in rest["data"]] == [files[0]["id"]] and not rest["has_more"]
    ascending = client.get("/v1/files", params={"order": "asc", "purpose": "batch"}).json()
    assert [f["id"] for f in ascending["data"]] == [f["id"] for f in files]
    deleted = client.delete(f"/v1/files/{files[0]['id']}").json()
    conforms(deleted, "DeleteFileResponse")


def test_batches_conform_in_every_state(api):
    client, store, run = api
    completed = create(client, upload(client, batch_file(3, bad=(1,)))["id"])  # validating
    run(completed["id"])
    done = client.get(f"/v1/batches/{completed['id']}").json()
    conforms(done, "Batch")
    assert done["status"] == "completed" and done["error_file_id"]
    for key in ("output_file_id", "error_file_id"):
        conforms(client.get(f"/v1/files/{done[key]}").json(), "OpenAIFile")

    failed = create(client, upload(client, b'{"custom_id": 1}\n')["id"])
    run(failed["id"])
    failed = client.get(f"/v1/batches/{failed['id']}").json()
    conforms(failed, "Batch")
    assert failed["status"] == "failed" and failed["errors"]["data"]

    cancelled = create(client, upload(client, batch_file(2))["id"])
    cancelling = client.post(f"/v1/batches/{cancelled['id']}/cancel").json()
    conforms(cancelling, "Batch")
    assert cancelling["status"] == "cancelling"
    run(cancelled["id"])
    conforms(client.get(f"/v1/batches/{cancelled['id']}").json(), "Batch")

    expired = create(client, upload(client, batch_file(2))["id"])
    record = store.get_batch(expired["id"])
    store.save_batch({**record, "expires_at": record["created_at"] - 1})
    run(expired["id"])
    expired = client.get(f"/v1/batches/{expired['id']}").json()
    conforms(expired, "Batch")
    assert expired["status"] == "expired" and expired["expired_at"]

    page = client.get("/v1/batches", params={"limit": 2}).json()
    conforms(page, "ListBatchesResponse")
    assert page["has_more"] and len(page["data"]) == 2
    rest = client.get("/v1/batches", params={"after": page["last_id"]}).json()
    conforms(rest, "ListBatchesResponse")
    assert len(rest["data"]) == 2 and not rest["has_more"]
