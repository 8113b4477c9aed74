import base64

import numpy as np
import orjson

from encoder.ingress.output import embedding_items, render_json


def test_base64_is_little_endian_float32_as_openai_python_decodes():
    vectors = np.array([[0.1, -2.5, 3e-8]], dtype=np.float32)
    item = embedding_items(vectors, "base64")[0]
    # openai-python: np.frombuffer(base64.b64decode(data), dtype="float32")
    decoded = np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4")
    np.testing.assert_array_equal(decoded, vectors[0])


def test_float_json_round_trips_float32_exactly():
    vectors = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    body = orjson.loads(render_json({"data": embedding_items(vectors, "float")}))
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    got = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
    np.testing.assert_array_equal(got, vectors)


def test_binary_follows_sentence_transformers_quantize_embeddings():
    vectors = np.random.default_rng(1).standard_normal((4, 24)).astype(np.float32)
    vectors[0, :3] = 0.0  # zero is not positive: bit 0
    # sentence_transformers.quantization.quantize_embeddings, written out:
    ubinary = np.packbits(vectors > 0).reshape(vectors.shape[0], -1)
    binary = (ubinary - 128).astype(np.int8)
    for values, expected, dtype in (("ubinary", ubinary, np.uint8), ("binary", binary, np.int8)):
        body = orjson.loads(render_json({"data": embedding_items(vectors, "float", values)}))
        got = np.array([d["embedding"] for d in body["data"]])
        np.testing.assert_array_equal(got.astype(dtype), expected)
        assert got.min() >= np.iinfo(dtype).min and got.max() <= np.iinfo(dtype).max
    # A width that is not a multiple of 8 is padded per vector (20 bits -> 3 bytes).
    odd = embedding_items(vectors[:, :20], "float", "ubinary")
    assert [len(item["embedding"]) for item in odd] == [3] * 4
    assert odd[1]["embedding"][2] == ubinary[1][2] & 0xF0
