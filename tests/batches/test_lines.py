"""OpenAI batch input lines: OpenAI's validation, and answers equal to synchronous requests."""

import asyncio
import json

import numpy as np
import pytest

from encoder.batches.lines import BatchLine, answer_line, parse_batch_file
from encoder.ingress.service import EmbeddingsService
from encoder.ingress.tokenize import TextTokenizer
from encoder.model.card import ModelCard
from encoder.settings import ServiceSettings
from tests.reference import cosine
from tests.schedulers import make_scheduler


def line(custom_id="a", url="/v1/embeddings", body=None, **extra) -> bytes:
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url,
                       "body": body if body is not None else {"input": "hi"}, **extra}).encode()


def test_a_valid_file_gives_its_lines_in_order():
    data = b"\n".join([line("a"), b"", line("b", body={"input": ["x", "y"]})]) + b"\n"
    lines, problems = parse_batch_file(data)
    assert problems == []
    assert [(ln.number, ln.custom_id) for ln in lines] == [(1, "a"), (2, "b")]
    assert json.loads(lines[1].body) == {"input": ["x", "y"]}


@pytest.mark.parametrize(("bad", "code", "param"), [
    (b"{not json", "invalid_json_line", None),
    (b"[1, 2]", "invalid_request", None),
    (line("b", url="/v1/chat/completions"), "invalid_url", "url"),
    (line("b", method="GET"), "invalid_method", "method"),
    (line(""), "missing_custom_id", "custom_id"),
    (line("a"), "duplicate_custom_id", "custom_id"),
    (line("b", body=["x"]), "invalid_body", "body"),
])
def test_a_bad_line_fails_the_file_naming_the_line(bad, code, param):
    lines, problems = parse_batch_file(line("a") + b"\n" + bad + b"\n")
    assert lines == []
    assert problems == [{"code": code, "message": problems[0]["message"], "param": param,
                         "line": 2}]


def test_too_many_lines_and_an_empty_file_fail():
    assert parse_batch_file(b"\n".join(line(str(i)) for i in range(4)), max_lines=3)[1][0][
        "code"] == "too_many_requests"
    assert parse_batch_file(b"\n\n")[1][0]["code"] == "empty_file"


@pytest.fixture(scope="module")
def service(jina_dir):
    settings = ServiceSettings(model=str(jina_dir))
    return EmbeddingsService(settings, ModelCard.from_folder(jina_dir), TextTokenizer(jina_dir),
                             make_scheduler(jina_dir).embed)


def test_answers_are_what_the_synchronous_request_gives(service, jina_reference):
    good = BatchLine(1, "q", json.dumps({"input": ["你好，世界"], "task": "retrieval.query",
                                         "dimensions": 32}).encode())
    bad = BatchLine(2, "b", json.dumps({"input": ""}).encode())

    async def both():
        return await asyncio.gather(answer_line(service, good), answer_line(service, bad))

    (ok, out), (failed, error) = asyncio.run(both())
    assert ok and out["custom_id"] == "q" and out["error"] is None
    assert out["id"].startswith("batch_req_") and out["response"]["status_code"] == 200
    vector = np.asarray(out["response"]["body"]["data"][0]["embedding"])
    assert cosine(vector, jina_reference.embed("你好，世界", "retrieval.query", 32)) >= 0.99999
    assert not failed and error["response"]["status_code"] == 400
    assert error["response"]["body"]["error"]["param"] == "input"
