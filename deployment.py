"""Ray Serve wiring only: an ONNX ``Encoder`` deployment, a FastAPI ``Ingress``, a builder.

Everything else lives in the Ray-free ``encoder`` package. No ``from __future__ import
annotations`` here: Ray reads the builder's ``args`` type at run time to validate the YAML.
"""

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Union

import numpy as np
import ray
from ray import serve
from ray.exceptions import RayActorError
from ray.serve import Application
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from ray.serve.handle import DeploymentHandle

from encoder.auth import load_api_key
from encoder.batching import TokenBatch
from encoder.coalesce import Coalescer
from encoder.errors import APIError, EncoderFailure, raise_failures
from encoder.http_app import build_app
from encoder.metrics import EncoderMetrics
from encoder.model_card import ModelCard
from encoder.model_files import resolve_model
from encoder.pipeline import EmbeddingPipeline
from encoder.service import EmbeddingsService
from encoder.settings import ServiceSettings
from encoder.tokenize import TextTokenizer

logger = logging.getLogger("ray.serve")

Result = Union[np.ndarray, EncoderFailure]
# Handle calls one ingress replica keeps in flight to the encoders.
_CALLS = 4


def _group_tokens(groups: List[List[TokenBatch]]) -> int:
    """Size of a pending ``@serve.batch`` batch: tokens, not requests (one group per call).

    Runs inside Ray's batcher, where an exception would break batching: it never raises.
    """
    try:
        return sum(b.size for group in groups for b in group)
    except Exception:
        return len(groups)


def _replica_threads(settings: ServiceSettings) -> int:
    if settings.ort_threads:
        return settings.ort_threads
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    return max(1, round(cpus))


@serve.deployment(max_ongoing_requests=64, ray_actor_options={"num_cpus": 1})
class Encoder:
    """One ONNX Runtime session; concurrent calls are merged into token-budgeted batches."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.pipeline = EmbeddingPipeline.load(settings, _replica_threads(settings))
        self._metrics = EncoderMetrics()
        self.pipeline.on_run = self._metrics.run
        # Arrival time of each token batch in this replica, for the queue-wait metric.
        self._arrivals: Dict[int, float] = {}
        # ORT runs on one dedicated thread so the event loop keeps queueing the next batch.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onnx")
        # One pipeline call at a time, each taking everything queued meanwhile (up to the
        # sort window), which it sorts by length and packs into max_batch_tokens runs.
        self._runs = Coalescer(self._run, settings.sort_window_tokens, concurrency=1)
        self.embed.set_max_batch_size(settings.sort_window_tokens)
        self.embed.set_batch_wait_timeout_s(settings.batch_wait_timeout_s)

    async def _run(self, batches: List[TokenBatch]) -> List[Result]:
        now = time.perf_counter()
        for batch in batches:
            self._metrics.waited(now - self._arrivals.pop(id(batch), now))
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.pipeline.embed, batches)

    # Several batches may be "in flight": they all wait in the coalescer, which merges them.
    @serve.batch(max_batch_size=512, batch_wait_timeout_s=0.0, max_concurrent_batches=16,
                 batch_size_fn=_group_tokens)
    async def embed(self, groups: List[List[TokenBatch]]) -> List[List[Result]]:
        """Pooled vectors for each token batch of each group (a failure where a run failed).

        A group is what one handle call carries: token batches of one or more requests.
        """
        flat = [batch for group in groups for batch in group]
        now = time.perf_counter()
        self._arrivals.update((id(batch), now) for batch in flat)
        try:
            results = await self._runs.submit(flat)
        finally:
            for batch in flat:  # a failed run never reached _run
                self._arrivals.pop(id(batch), None)
        out, start = [], 0
        for group in groups:
            out.append(results[start : start + len(group)])
            start += len(group)
        return out

    async def ping(self) -> bool:
        """Readiness probe used by the ingress's ``/health``."""
        return True

    async def check_health(self) -> None:
        """Ray's periodic health check, queued behind the batches on the ONNX thread.

        Answering proves the replica's loop and ONNX thread are alive. After a failed run
        it also runs a tiny inference: a replica whose session fails raises here, is marked
        unhealthy and replaced.
        """
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.pipeline.check)


@serve.deployment(max_ongoing_requests=256, ray_actor_options={"num_cpus": 0.2})
@serve.ingress()
class Ingress:
    """HTTP front: validates and tokenizes, fans token batches out to the encoders."""

    def __init__(self, settings: ServiceSettings, encoder: DeploymentHandle) -> None:
        files = resolve_model(settings.model, settings.onnx_file, settings.revision,
                              with_onnx=False)
        # Read on the replica, so the key is never part of the serialised application.
        self._api_key = load_api_key(settings.api_key_file)
        self._encoder = encoder
        self.service = EmbeddingsService(
            settings, ModelCard.from_folder(files.root), TextTokenizer(files.root), self._embed
        )
        # Token batches of concurrent requests travel to the encoders in one handle call:
        # each call costs CPU in the router and the replica, which one-query requests would
        # otherwise pay once each. 4 calls in flight keep several encoder replicas busy;
        # together they carry one sort window, so a big request queues at most a window's
        # work ahead of a lone query arriving after it.
        call_tokens = max(settings.max_batch_tokens, settings.sort_window_tokens // _CALLS)
        self._calls = Coalescer(self._call_encoder, call_tokens, concurrency=_CALLS)

    async def _call_encoder(self, batches: List[TokenBatch]) -> List[Result]:
        return await self._encoder.embed.remote(batches)

    async def _embed(self, batches: List[TokenBatch]) -> List[np.ndarray]:
        try:
            results = await self._calls.submit(batches)
        except BackPressureError as exc:
            raise _unavailable("the encoders' queues are full", "overloaded",
                               exc.retry_after_s) from exc
        except (RayActorError, DeploymentUnavailableError) as exc:
            # A replica died or is restarting: the request is safe to retry.
            raise _unavailable("an encoder replica failed while serving this request",
                               "encoder_unavailable", None) from exc
        return raise_failures(results)

    async def _ready(self) -> bool:
        try:
            return await asyncio.wait_for(self._encoder.ping.remote(), timeout=2.0)
        except Exception:
            return False

    def __serve_build_asgi_app__(self):
        return build_app(self.service, self._ready, self._api_key)


def _unavailable(message: str, code: str, retry_after_s: Union[float, None]) -> APIError:
    seconds = max(1, round(retry_after_s or 1))
    return APIError(f"{message}; retry", status=503, type="server_error", code=code,
                    headers={"Retry-After": str(seconds)})


def app_builder(args: ServiceSettings) -> Application:
    """Build the application from ``serve_config.yaml``'s ``args`` (validated by Ray)."""
    return Ingress.bind(args, Encoder.bind(args))
