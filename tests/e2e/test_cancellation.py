"""Work nobody waits for is not done: clients that disconnect cancel their queued parcels on
the encoder, on the shipped serving path (HAProxy as jina-haproxy configures it, direct
ingress): a raw client that sends its request in one write, and httpx (the openai SDK's
client), which sends the body apart from the headers."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from tests.marked_processes import cpu_seconds
from tests.serve_process import abandon

pytestmark = pytest.mark.e2e

# ~1 s of one ONNX thread each on MiniLM: 20 of them queue ~20 s of work.
PASSAGES = [f"passage {i} " + "about cancelling work nobody waits for any more " * 12
            for i in range(24)]
CLIENTS = 20
GIVE_UP_S = 1.0


@pytest.fixture(scope="module")
def service(minilm_service):
    return minilm_service


async def _httpx_gives_up(url: str, body: bytes) -> str:
    """What the openai SDK does on its timeout: httpx sends, waits, closes."""
    async with httpx.AsyncClient(timeout=GIVE_UP_S) as client:
        try:
            response = await client.post(f"{url}/v1/embeddings", content=body,
                                         headers={"content-type": "application/json"})
        except httpx.TimeoutException:
            return "gave up"
        return str(response.status_code)


def _work_done_after_giving_up(service, client: str) -> float:
    """Encoder CPU spent on ``CLIENTS`` abandoned requests, as a share of their work."""
    pid = service.replica_pid()
    with httpx.Client(timeout=120) as http:
        http.post(f"{service.url}/v1/embeddings", json={"input": PASSAGES[:2]})
        before = cpu_seconds(pid)
        assert http.post(f"{service.url}/v1/embeddings",
                         json={"input": PASSAGES}).status_code == 200
        one_request_s = cpu_seconds(pid) - before
    before, start = cpu_seconds(pid), time.monotonic()

    async def abandon_all() -> list[str]:
        body = json.dumps({"input": PASSAGES}).encode()
        give_up = (_httpx_gives_up(service.url, body) if client == "httpx"
                   else abandon(service.url, body, GIVE_UP_S) for _ in range(CLIENTS))
        return await asyncio.gather(*give_up)

    outcomes = asyncio.run(abandon_all())
    last = cpu_seconds(pid)
    while time.monotonic() - start < 20:  # until the encoder is idle again, or 20 s
        time.sleep(1)
        now = cpu_seconds(pid)
        if now - last < 0.15:
            break
        last = now
    used = cpu_seconds(pid) - before
    share = used / (one_request_s * CLIENTS)
    print(f"{client}: {outcomes.count('gave up')} of {CLIENTS} gave up; encoder "
          f"CPU {used:.2f} s in {time.monotonic() - start:.1f} s against "
          f"{one_request_s:.2f} s per request: {share:.2f} of their work")
    assert outcomes.count("gave up") >= CLIENTS // 2, outcomes  # they were queued
    return share


@pytest.mark.parametrize("client", ["one write", "httpx"])
def test_clients_that_give_up_cancel_their_queued_work(service, client):
    assert _work_done_after_giving_up(service, client) < 0.3
    with httpx.Client(timeout=30) as http:  # and the service answers at once afterwards
        assert http.post(f"{service.url}/v1/embeddings", json={"input": "hi"}).status_code == 200
