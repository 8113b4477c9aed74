import base64

import numpy as np
import orjson

from encoder.output import embedding_items, render_json


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
