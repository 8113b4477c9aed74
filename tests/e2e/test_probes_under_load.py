"""Probes stay fast while the encoder is saturated, on the shipped config: a Kubernetes
probe with a 1 s timeout must not restart a pod because it is busy."""

from __future__ import annotations

import threading
import time

import httpx
import numpy as np
import pytest

from tests.serve_process import serve_run

pytestmark = pytest.mark.e2e

PASSAGES = [f"passage {i} about probes, load and the latency of health checks " * 6
            for i in range(64)]


def test_health_and_models_answer_fast_while_the_encoder_is_saturated(minilm_dir, tmp_path):
    with serve_run(minilm_dir, tmp_path, cpus=None) as service:
        stop = threading.Event()
        statuses: list[int | str] = []

        def client() -> None:
            with httpx.Client(timeout=120) as http:
                while not stop.is_set():
                    try:
                        response = http.post(f"{service.url}/v1/embeddings",
                                             json={"input": PASSAGES})
                    except httpx.HTTPError as exc:
                        statuses.append(type(exc).__name__)
                        continue
                    statuses.append(response.status_code)
                    if response.status_code == 429:  # as the openai SDK does
                        time.sleep(float(response.headers.get("retry-after", 1)))

        probes: dict[str, list[float]] = {"/health": [], "/v1/models": []}
        # Asserted in the test's own thread below: a failure in a thread is only a warning.
        failures: list[str] = []

        def probe() -> None:
            with httpx.Client(timeout=10) as http:
                while not stop.is_set():
                    for path, samples in probes.items():
                        start = time.perf_counter()
                        try:
                            status = http.get(f"{service.url}{path}").status_code
                        except httpx.HTTPError as exc:
                            status = type(exc).__name__
                        samples.append(time.perf_counter() - start)
                        if status != 200:
                            failures.append(f"{path}: {status}")
                    time.sleep(0.1)

        clients = [threading.Thread(target=client) for _ in range(12)]
        for thread in clients:
            thread.start()
        time.sleep(3)  # the encoder's queue fills
        prober = threading.Thread(target=probe)
        prober.start()
        time.sleep(12)
        stop.set()
        for thread in [*clients, prober]:
            thread.join(timeout=120)
    assert not failures, failures
    for path, samples in probes.items():
        ms = np.array(samples) * 1000
        print(f"{path}: {len(ms)} probes, p50 {np.percentile(ms, 50):.0f} ms, "
              f"max {ms.max():.0f} ms; embeddings: {statuses.count(200)} x 200, "
              f"{statuses.count(429)} x 429")
        assert statuses.count(200) >= 4, statuses  # the encoder really worked meanwhile
        assert set(statuses) <= {200, 429}, statuses
        assert len(ms) >= 50
        assert np.percentile(ms, 50) <= 100 and ms.max() <= 1000, (path, sorted(ms)[-5:])
