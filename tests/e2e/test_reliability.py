"""Overload, replica death and authentication against the real application."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import numpy as np
import pytest

from tests.e2e.services import API_KEY, LIMITS

pytestmark = pytest.mark.e2e

KEY = API_KEY
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def service(guarded_service):
    return guarded_service


def test_api_key_required_except_for_health(service):
    assert httpx.get(f"{service.url}/health").status_code == 200
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": KEY}):
        response = httpx.post(f"{service.url}/v1/embeddings", json={"input": "a"},
                              headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(f"{service.url}/v1/models").status_code == 401
    ok = httpx.post(f"{service.url}/v1/embeddings", json={"input": "a"}, headers=AUTH)
    assert ok.status_code == 200


def test_burst_of_ten_times_capacity_gets_fast_429s(service):
    texts = [f"passage {i} about overload and queues " * 8 for i in range(32)]  # ~2k tokens

    async def one(client):
        start = time.perf_counter()
        response = await client.post(f"{service.url}/v1/embeddings", json={"input": texts},
                                     headers=AUTH)
        return response, time.perf_counter() - start

    async def burst():
        async with httpx.AsyncClient(timeout=60,
                                     limits=httpx.Limits(max_connections=64)) as client:
            return await asyncio.gather(*(one(client) for _ in range(40)))

    results = asyncio.run(burst())
    statuses = [r.status_code for r, _ in results]
    accepted = [t for r, t in results if r.status_code == 200]
    refused = [(r, t) for r, t in results if r.status_code == 429]
    print(f"burst: {statuses.count(200)} x 200, {statuses.count(429)} x 429, accepted p99 "
          f"{np.percentile(accepted, 99):.2f} s, slowest 429 {max(t for _, t in refused):.2f} s")
    assert set(statuses) <= {200, 429}
    tokens = next(r for r, _ in results if r.status_code == 200).json()["usage"]["prompt_tokens"]
    capacity = min(LIMITS["max_inflight_requests"], LIMITS["max_inflight_tokens"] // tokens)
    assert len(results) >= 10 * capacity
    assert len(accepted) >= capacity and refused
    assert np.percentile(accepted, 99) < 10
    for response, seconds in refused:
        assert seconds < 1.0
        assert response.headers["retry-after"].isdigit()
        assert response.json()["error"]["code"] == "overloaded"
    after = httpx.post(f"{service.url}/v1/embeddings", json={"input": "calm"}, headers=AUTH)
    assert after.status_code == 200


def test_killed_encoder_replica_recovers_and_only_in_flight_requests_fail(service):
    import ray

    ray.init(address=service.gcs_address(), namespace="serve", log_to_driver=False,
             logging_level="ERROR")
    try:
        replicas = [a for a in ray.util.list_named_actors(all_namespaces=True)
                    if "Encoder" in a["name"]]
        assert len(replicas) == 1, replicas
        outcomes: list[tuple[float, float, int, tuple | None]] = []
        health: list[tuple[float, int]] = []
        stop = threading.Event()

        def load() -> None:
            with httpx.Client(timeout=60) as client:
                while not stop.is_set():
                    sent = time.monotonic()
                    response = client.post(f"{service.url}/v1/embeddings", headers=AUTH,
                                           json={"input": ["kill test"] * 16})
                    code = None if response.status_code == 200 else (
                        response.json()["error"]["code"], response.headers.get("retry-after"))
                    outcomes.append((sent, time.monotonic(), response.status_code, code))

        def probe() -> None:
            with httpx.Client(timeout=10) as client:
                while not stop.is_set():
                    health.append((time.monotonic(), client.get(f"{service.url}/health")
                                   .status_code))
                    time.sleep(0.1)

        threads = [threading.Thread(target=load) for _ in range(4)]
        threads.append(threading.Thread(target=probe))
        for thread in threads:
            thread.start()
        time.sleep(2)
        actor = ray.get_actor(replicas[0]["name"], namespace=replicas[0]["namespace"])
        ray.kill(actor, no_restart=True)
        killed = _wait_dead(ray, actor)
        recovered = None
        while time.monotonic() - killed < 45 and recovered is None:
            time.sleep(0.2)
            # Recovery: the first success of a request sent after the kill (with a margin:
            # a dying actor can still finish what it already holds).
            recovered = min((done for sent, done, status, _ in outcomes
                             if sent > killed + 0.5 and status == 200), default=None)
        time.sleep(3)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        ray.shutdown()

    failures = [o for o in outcomes if o[2] != 200]
    timeline = [(round(t - killed, 1), status) for t, status in health if t > killed - 0.5]
    print(f"kill: {len(outcomes)} requests, {len(failures)} failed {failures}, recovered "
          f"{(recovered or float('nan')) - killed:.1f} s after the kill; /health {timeline}")
    assert recovered is not None and recovered - killed < 30
    for _, _, status, (code, retry_after) in failures:
        assert status == 503 and code == "encoder_unavailable" and retry_after.isdigit()
    # Requests sent after recovery all succeed again.
    assert all(status == 200 for sent, _, status, _ in outcomes if sent > recovered)
    # /health said so: not ready while no replica served, ready again after recovery.
    assert any(status == 503 for t, status in health if killed < t < recovered)
    assert all(status == 200 for t, status in health if t > recovered + 1)


def _wait_dead(ray, actor) -> float:
    """ray.kill returns at once; the time the actor is really gone."""
    from ray.exceptions import GetTimeoutError, RayActorError

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            ray.get(actor.__ray_ready__.remote(), timeout=1)
        except RayActorError:
            return time.monotonic()
        except GetTimeoutError:
            pass
        time.sleep(0.05)
    raise AssertionError("the killed replica did not die")
