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


@pytest.fixture
def api(jina_dir, tmp_path):
    """``(client, store, run)``: an HTTP client of the app with the Batch API's routes, its
    store, and ``run(batch_id)``, which takes a batch to its end."""
    store = BatchStore(str(tmp_path / "store"))
    settings = ServiceSettings(model=str(jina_dir))
    service = EmbeddingsService(settings, ModelCard.from_folder(jina_dir),
                                TextTokenizer(jina_dir), make_scheduler(jina_dir).embed)
    runner = BatchRunner(store, service, max_file_bytes=1 << 20)

    async def wake() -> None:
        return None

    router = batch_router(store, wake, BatchApiSettings(storage=str(tmp_path)), 1 << 20)
    client = TestClient(build_app(service, ready, None, router))

    def run(batch_id: str) -> None:
        asyncio.run(runner.run(batch_id))

    return client, store, run
