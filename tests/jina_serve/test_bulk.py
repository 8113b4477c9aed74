"""Bulk rows: the service's vectors and output types, a bad row never failing the others."""

import json

import numpy as np
import pyarrow as pa
import pytest

from encoder.errors import EmbeddingError
from encoder.settings import ServiceSettings
from jina_serve.bulk import BulkOptions, LineAnswerer, RowEncoder
from tests.reference import cosine

TEXTS = ["Hello world", "你好，世界", "", None, "word " * 9000, "emoji 🎉 ok"]


def encoder(folder, **options) -> RowEncoder:
    return RowEncoder(ServiceSettings(model=str(folder)), BulkOptions(**options), threads=1)


def test_rows_get_the_reference_vectors_and_bad_rows_an_error(jina_dir, jina_reference):
    table = pa.table({"id": list(range(len(TEXTS))), "text": TEXTS})
    out = encoder(jina_dir, task="retrieval.passage", dimensions=32)(table)
    assert out.column_names == ["id", "text", "embedding", "error"]
    assert out.schema.field("embedding").type == pa.list_(pa.float32(), 32)
    errors = out.column("error").to_pylist()
    assert errors[2] == "the text is empty" and errors[3] == "the text is not a string"
    assert errors[4].startswith("the text has ") and "more than the limit of 8192" in errors[4]
    vectors = out.column("embedding").to_pylist()
    for i in (0, 1, 5):
        assert errors[i] is None
        want = jina_reference.embed(TEXTS[i], "retrieval.passage", dimensions=32)
        assert cosine(vectors[i], want) >= 0.99999
    assert [vectors[i] for i in (2, 3, 4)] == [None, None, None]


def test_truncate_and_binary_types(jina_dir, jina_reference):
    table = pa.table({"text": ["a binary text", "word " * 9000]})
    out = encoder(jina_dir, embedding_type="ubinary", truncate=True)(table)
    assert out.schema.field("embedding").type == pa.list_(pa.uint8(), 8)
    assert out.column("error").null_count == 2
    want = np.packbits(jina_reference.embed("a binary text") > 0)
    assert out.column("embedding").to_pylist()[0] == want.tolist()
    signed = encoder(jina_dir, embedding_type="binary")(table.slice(0, 1))
    assert signed.column("embedding").to_pylist()[0] == (want.astype(int) - 128).tolist()


def test_a_missing_column_and_a_bad_option_are_refused(jina_dir):
    with pytest.raises(KeyError, match="body"):
        encoder(jina_dir, column="body")(pa.table({"text": ["x"]}))
    with pytest.raises(EmbeddingError):
        encoder(jina_dir, dimensions=65)
    with pytest.raises(EmbeddingError):
        encoder(jina_dir, task="no-such-task")


def test_batch_lines_are_answered_together(jina_dir, jina_reference):
    answer = LineAnswerer(ServiceSettings(model=str(jina_dir)), threads=1)
    bodies = [json.dumps({"input": "你好，世界"}).encode(), json.dumps({"input": []}).encode()]
    out = answer(pa.table({"number": [1, 2], "custom_id": ["a", "b"], "body": bodies}))
    assert out.column("succeeded").to_pylist() == [True, False]
    first = json.loads(out.column("line")[0].as_py())
    vector = first["response"]["body"]["data"][0]["embedding"]
    assert cosine(vector, jina_reference.embed("你好，世界")) >= 0.99999
    assert json.loads(out.column("line")[1].as_py())["response"]["status_code"] == 400
