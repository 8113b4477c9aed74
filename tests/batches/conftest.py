"""The Batch API's routes in-process: the real store, runner and scheduler, no Ray."""

import asyncio

import pytest
from fastapi.testclient import TestClient

from encoder.batches.routes import batch_router
from encoder.batches.runner import BatchRunner
from encoder.batches.store import BatchStore
from encoder.http.app import build_app
from encoder.ingress.service import EmbeddingsService
from encoder.ingress.tokenize import TextTokenizer
from encoder.model.card import ModelCard
from encoder.settings import BatchApiSettings, ServiceSettings
from tests.clients import ready
from tests.schedulers import make_scheduler


@pytest.fixture(scope="module")
def batch_service(jina_dir) -> EmbeddingsService:
    """The service the routes' batches run through, on an in-process scheduler (its ONNX
    sessions loaded once per module)."""
    return EmbeddingsService(ServiceSettings(model=str(jina_dir)),
                             ModelCard.from_folder(jina_dir), TextTokenizer(jina_dir),
                             make_scheduler(jina_dir).embed)


@pytest.fixture
def api(batch_service, tmp_path):
    """``(client, store, run)``: an HTTP client of the app with the Batch API's routes, an
    empty store, and ``run(batch_id)``, which takes a batch to its end."""
    store = BatchStore(str(tmp_path / "store"))
    service = batch_service
    runner = BatchRunner(store, service, max_file_bytes=1 << 20)

    async def wake() -> None:
        return None

    router = batch_router(store, wake, BatchApiSettings(storage=str(tmp_path)), 1 << 20)
    client = TestClient(build_app(service, ready, None, router))

    def run(batch_id: str) -> None:
        asyncio.run(runner.run(batch_id))

    return client, store, run
