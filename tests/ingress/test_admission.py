import asyncio

import httpx
import numpy as np
import pytest

from encoder.errors import EmbeddingError
from encoder.http.app import build_app
from encoder.ingress.admission import AdmissionControl, estimate_tokens
from encoder.ingress.service import EmbeddingsService
from encoder.ingress.tokenize import TextTokenizer
from encoder.model.card import ModelCard
from encoder.settings import ServiceSettings
from tests.clients import assert_envelope, make_client, ready


def test_admits_within_budget_and_releases():
    control = AdmissionControl(max_tokens=100, max_requests=10)
    with control.admit(60) as first:
        first.hold(60)
        assert control.tokens == 60 and control.requests == 1
        with control.admit(40) as second:
            second.hold(40)
            assert control.tokens == 100
    assert control.tokens == 0 and control.requests == 0


def test_an_estimate_over_budget_is_429_with_retry_after():
    control = AdmissionControl(max_tokens=100, max_requests=10)
    with control.admit(60) as first, pytest.raises(EmbeddingError) as info:
        first.hold(60)
        with control.admit(41):
            pass
    error = info.value
    assert error.status == 429 and error.code == "overloaded"
    assert int(error.headers()["Retry-After"]) >= 1
    assert control.tokens == 0 and control.requests == 0


def test_the_estimate_holds_nothing_and_the_exact_count_decides():
    control = AdmissionControl(max_tokens=100, max_requests=10)
    with control.admit(90) as big:  # admitted on its estimate, not yet tokenized
        assert control.tokens == 0
        with control.admit(50) as other:  # so a request beside it still fits
            other.hold(50)
            with pytest.raises(EmbeddingError):
                big.hold(90)  # exact: 90 + 50 > 100 beside another request
        assert control.tokens == 0


def test_request_count_limit_and_lone_big_request():
    control = AdmissionControl(max_tokens=10, max_requests=1)
    # Nothing in flight: a request over the budget is still admitted, the next one is not.
    with control.admit(10_000) as lone, pytest.raises(EmbeddingError):
        lone.hold(10_000)
        with control.admit(1):
            pass


def test_budget_released_when_the_work_fails():
    control = AdmissionControl(max_tokens=10, max_requests=2)
    with pytest.raises(RuntimeError), control.admit(5) as ticket:
        ticket.hold(5)
        raise RuntimeError("encoder died")
    assert control.tokens == 0 and control.requests == 0


def test_estimate_from_body_size():
    assert estimate_tokens(0) == 1 and estimate_tokens(4000) == 1000


# Through the HTTP app: what clients see.


def test_overload_is_429_while_admitted_work_runs(jina_dir):
    release = asyncio.Event()

    async def held(batches):
        await release.wait()
        return [np.zeros((len(b), 64), dtype=np.float32) for b in batches]

    busy = make_client(jina_dir, embed=held, max_inflight_requests=1)

    async def scenario():
        transport = httpx.ASGITransport(app=busy.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            first = asyncio.create_task(http.post("/v1/embeddings", json={"input": "a"}))
            await asyncio.sleep(0.2)
            second = await http.post("/v1/embeddings", json={"input": "b"})
            release.set()
            return await first, second

    first, second = asyncio.run(scenario())
    assert first.status_code == 200
    assert_envelope(second, 429, None)
    assert second.headers["retry-after"].isdigit()


def test_overload_refuses_a_big_body_before_tokenizing_it(jina_dir, monkeypatch):
    release = asyncio.Event()

    async def held(batches):
        await release.wait()
        return [np.zeros((len(b), 64), dtype=np.float32) for b in batches]

    settings = ServiceSettings(model=str(jina_dir), max_inflight_tokens=50_000)
    service = EmbeddingsService(settings, ModelCard.from_folder(jina_dir),
                                TextTokenizer(jina_dir), held)
    app = build_app(service, ready)
    tokenized = []
    encode = service.tokenizer.encode
    monkeypatch.setattr(service.tokenizer, "encode",
                        lambda texts, *a: tokenized.append(len(texts)) or encode(texts, *a))
    big = {"input": ["many words in a long passage " * 60] * 100}  # ~190 kB: ~47k estimated

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            first = asyncio.create_task(http.post("/v1/embeddings", json={"input": "a " * 8000}))
            await asyncio.sleep(0.2)
            refused = await http.post("/v1/embeddings", json=big)
            release.set()
            return await first, refused

    first, refused = asyncio.run(scenario())
    assert first.status_code == 200
    assert_envelope(refused, 429, None)
    assert tokenized == [1]  # only the admitted request was tokenized
