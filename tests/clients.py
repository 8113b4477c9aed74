"""Helpers the tests share to talk to the service: an in-process HTTP client, OpenAI batch
files, and waiting for a condition."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx
import numpy as np
from fastapi.testclient import TestClient

from encoder.http.app import build_app
from encoder.ingress.service import EmbeddingsService
from encoder.ingress.tokenize import TextTokenizer
from encoder.model.card import ModelCard
from encoder.settings import ServiceSettings
from tests.schedulers import make_scheduler

T = TypeVar("T")


async def ready() -> bool:
    """The ready check of an in-process app: always ready."""
    return True


# Tokenizers by model folder, loaded once per test run (jina's takes ~0.5 s); they keep no
# state between calls.
_TOKENIZERS: dict[Path, TextTokenizer] = {}


def tokenizer_of(folder: Path) -> TextTokenizer:
    """The model's tokenizer, loaded once per test run."""
    if folder not in _TOKENIZERS:
        _TOKENIZERS[folder] = TextTokenizer(folder)
    return _TOKENIZERS[folder]


def make_client(folder, api_key=None, embed=None, **overrides) -> TestClient:
    """The HTTP app in-process (no Ray) on the model in ``folder``: its own scheduler, or
    ``embed``; ``overrides`` are ``ServiceSettings`` fields."""
    settings = ServiceSettings(model=str(folder), **overrides)
    service = EmbeddingsService(settings, ModelCard.from_folder(folder), tokenizer_of(folder),
                                embed or make_scheduler(folder).embed)
    return TestClient(build_app(service, ready, api_key))


def vectors(body: dict) -> np.ndarray:
    """The embeddings of a response body, as a float64 matrix."""
    return np.array([d["embedding"] for d in body["data"]], dtype=np.float64)


def assert_envelope(response, status: int, param: str | None) -> None:
    """``response`` is OpenAI's error envelope with ``status`` naming ``param``."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"] and error["type"]
    assert error["param"] == param


def batch_file(count: int, bad: tuple[int, ...] = (), repeat: int = 1, inputs: int = 1,
               task: str | None = None) -> bytes:
    """An OpenAI batch input file of ``count`` embeddings lines ``c0``, ``c1``, ...; line
    ``i``'s body has ``inputs`` texts of "line i" said ``repeat`` times, and the lines in
    ``bad`` an empty input (a 400 of their own)."""
    def body(i: int) -> dict:
        text = "" if i in bad else line_text(i, repeat)
        return {"input": text if inputs == 1 else [text] * inputs,
                **({"task": task} if task else {})}

    lines = [{"custom_id": f"c{i}", "method": "POST", "url": "/v1/embeddings",
              "body": body(i)} for i in range(count)]
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def line_text(i: int, repeat: int = 1) -> str:
    """The text of ``batch_file``'s line ``i``."""
    return " ".join([f"line {i}"] * repeat)


def wait_until(condition: Callable[[], T], timeout_s: float, what: str,
               every_s: float = 0.3) -> T:
    """``condition()``'s first truthy value, polled every ``every_s``; fails naming ``what``
    after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(every_s)


def wait_for_batch(client, batch_id: str, done: Callable[[object], bool],
                   timeout_s: float = 180):
    """The batch (an OpenAI SDK client's view) once ``done(batch)`` holds."""
    return wait_until(lambda: (b := client.batches.retrieve(batch_id)) and done(b) and b,
                      timeout_s, f"batch {batch_id}")


def scrape(service) -> str:
    """The Prometheus text of every metrics agent of a running instance's Ray."""
    discovery = json.loads((service.session_dir() / "prom_metrics_service_discovery.json")
                           .read_text())
    texts = []
    for target in [target for group in discovery for target in group["targets"]]:
        with contextlib.suppress(httpx.HTTPError):  # a node's agent may be restarting
            texts.append(httpx.get(f"http://{target}/metrics", timeout=5).text)
    return "\n".join(texts)


def sample(text: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples in ``text`` that carry ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total
