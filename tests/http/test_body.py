"""Request bodies: Content-Encoding (gzip, deflate), its size limit and its errors."""

import gzip
import json
import zlib

import pytest

from tests.clients import assert_envelope, make_client, vectors

BODY = json.dumps({"input": ["Ein Kätzchen schläft.", "A kitten sleeps."]}).encode()


@pytest.fixture(scope="module")
def client(jina_dir):
    return make_client(jina_dir, max_body_bytes=64 * 1024)


def _post(client, content: bytes, encoding: str | None):
    headers = {"content-type": "application/json"}
    if encoding is not None:
        headers["content-encoding"] = encoding
    return client.post("/v1/embeddings", content=content, headers=headers)


def _raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


@pytest.mark.parametrize("encoding,pack", [
    ("gzip", gzip.compress),
    ("x-gzip", gzip.compress),
    ("GZIP", gzip.compress),
    ("deflate", zlib.compress),
    ("deflate", _raw_deflate),
    ("identity", lambda data: data),
    ("gzip, deflate", lambda data: zlib.compress(gzip.compress(data))),
], ids=["gzip", "x-gzip", "upper-case", "deflate-zlib", "deflate-raw", "identity", "stacked"])
def test_encoded_bodies_embed_like_plain_ones(client, encoding, pack):
    plain = _post(client, BODY, None)
    encoded = _post(client, pack(BODY), encoding)
    assert encoded.status_code == 200, encoded.text
    assert (vectors(encoded.json()) == vectors(plain.json())).all()


def test_large_encoded_body_decodes_on_a_worker_thread(jina_dir):
    # Stored (level 0) gzip of a whitespace-padded body: over the inline threshold as sent,
    # so it takes the thread path, and still under the limit once decoded.
    roomy = make_client(jina_dir, max_body_bytes=1024 * 1024)
    packed = gzip.compress(BODY + b" " * 200_000, compresslevel=0)
    assert len(packed) > 200_000
    response = _post(roomy, packed, "gzip")
    assert response.status_code == 200, response.text
    assert (vectors(response.json()) == vectors(_post(roomy, BODY, None).json())).all()


def test_decoded_size_is_limited_like_the_sent_size(client):
    bomb = gzip.compress(b'{"input": "' + b"a" * (10 * 1024 * 1024) + b'"}')
    assert len(bomb) < 64 * 1024
    response = _post(client, bomb, "gzip")
    assert_envelope(response, 413, None)
    assert response.json()["error"]["code"] == "request_too_large"


@pytest.mark.parametrize("content,encoding", [
    (BODY, "gzip"),  # claims gzip, is not
    (gzip.compress(BODY)[:-12], "gzip"),  # cut short
    (gzip.compress(BODY) + b"trailing", "gzip"),
    (b"\x00\x01\x02", "deflate"),
], ids=["not-gzip", "truncated", "trailing-garbage", "not-deflate"])
def test_undecodable_bodies_are_400(client, content, encoding):
    response = _post(client, content, encoding)
    assert_envelope(response, 400, None)
    assert response.json()["error"]["code"] == "invalid_content_encoding"


@pytest.mark.parametrize("encoding", ["br", "zstd", "gzip, br", "compress"])
def test_unknown_encodings_are_415(client, encoding):
    response = _post(client, BODY, encoding)
    assert_envelope(response, 415, None)
    assert response.json()["error"]["code"] == "unsupported_content_encoding"


def test_tokenize_takes_gzip_too(client):
    response = client.post("/tokenize", content=gzip.compress(b'{"inputs": "hello"}'),
                           headers={"content-encoding": "gzip"})
    assert response.status_code == 200, response.text
