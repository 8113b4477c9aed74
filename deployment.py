"""Ray Serve wiring only: an ONNX ``Encoder`` deployment per model, a FastAPI ``Ingress``, the
``BatchWorker``, a builder.

Everything else lives in the Ray-free ``encoder`` package. No ``from __future__ import
annotations`` here: Ray reads the builder's ``args`` type at run time to validate the YAML.
"""

import asyncio
import contextlib
from typing import Any, Dict, List, Tuple

import ray
from ray import serve
from ray.exceptions import RayActorError
from ray.serve import Application
from ray.serve.autoscaling_policy import replica_queue_length_autoscaling_policy
from ray.serve.config import AutoscalingContext
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from ray.serve.handle import DeploymentHandle

from encoder.batches.routes import batch_router
from encoder.batches.runner import BatchRunner
from encoder.batches.store import BatchStore
from encoder.errors import EmbeddingError, ErrorKind
from encoder.http.app import build_app
from encoder.http.auth import load_api_key
from encoder.ingress.models import ModelRouter
from encoder.ingress.rerank import RerankService
from encoder.ingress.service import EmbeddingsService
from encoder.metrics import EncoderMetrics, IngressMetrics
from encoder.model.card import ModelCard
from encoder.model.files import model_root
from encoder.parcels import Parcel
from encoder.scheduling.scheduler import Result, Scheduler
from encoder.settings import ModelSettings, ServiceSettings


def replica_threads(model: ModelSettings) -> int:
    """ORT threads for this replica: ``scheduler.ort_threads``, else its CPUs rounded."""
    if model.scheduler.ort_threads:
        return model.scheduler.ort_threads
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    return max(1, round(cpus))


@serve.deployment(max_ongoing_requests=64, ray_actor_options={"num_cpus": 1})
class Encoder:
    """One model's ONNX Runtime behind the scheduler; ``@serve.batch`` hands it the calls
    that arrive together, so concurrent requests share windows and runs. Every model has
    its own (``deployment`` in its settings names it)."""

    def __init__(self, model: ModelSettings) -> None:
        metrics = EncoderMetrics(model.served_model_name)
        # What serve_config.yaml declared (ray_actor_options.memory): long inputs must fit it.
        memory = ray.get_runtime_context().get_assigned_resources().get("memory")
        self.scheduler = Scheduler.load(model, replica_threads(model),
                                        on_run=metrics.run, on_wait=metrics.waited,
                                        memory=memory)
        self._enqueue.set_batch_wait_timeout_s(model.scheduler.call_wait_s)

    async def embed(self, parcel: Parcel) -> Result:
        """Pooled vectors (or a reranker's scores) of one parcel (an ``EmbeddingError`` if
        its run failed).

        A caller that goes away (client disconnect, timeout) cancels this call; its parcel
        is then dropped from the queue, or its runs skipped.
        """
        return await (await self._enqueue(parcel))

    async def embed_many(self, parcels: List[Parcel]) -> List[Result]:
        """``embed`` for several requests' parcels in one call (the ingress groups them)."""
        return await self.scheduler.embed(parcels)

    async def embed_background(self, parcel: Parcel) -> Result:
        """``embed`` for the Batch API's work: it runs only while no request waits."""
        return await self.scheduler.enqueue([parcel], background=True)[0]

    # Returns at once (the scheduler queues), so Ray's batcher never holds calls back
    # behind a running window; at most a replica's max_ongoing_requests calls per group.
    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.0)
    async def _enqueue(self, parcels: List[Parcel]) -> List[asyncio.Future]:
        return self.scheduler.enqueue(parcels)

    async def ping(self) -> bool:
        """Readiness probe used by the ingress's ``/health``."""
        return True

    async def record_autoscaling_stats(self) -> Dict[str, float]:
        """Serve's custom autoscaling metric: the parcels this replica holds."""
        return {HELD_PARCELS: self.scheduler.held()}

    async def check_health(self) -> None:
        """Ray's periodic health check, on the ONNX thread behind the running window.

        Answering proves the replica's loop and ONNX thread are alive; after a failed run it
        also runs a tiny inference, and a replica whose session fails it is replaced.
        """
        await self.scheduler.check_async()


@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0.1})
class BatchWorker:
    """Runs Batch API batches beside the serving replicas (``encoder/batches/runner.py``),
    resuming what a restart left, with the encoders' background queues doing the work."""

    async def __init__(self, settings: ServiceSettings,
                       encoders: Dict[str, DeploymentHandle]) -> None:
        services = []
        for model in settings.models():
            if kind_of(model) == "embeddings":
                call = encoders[model.deployment].embed_background
                services.append(EmbeddingsService.for_model(
                    settings, lambda parcels, call=call: _call_encoders(call, parcels), model))
        self.runner = BatchRunner(BatchStore(settings.batches.storage),
                                  ModelRouter(settings, services),
                                  settings.batches.max_file_bytes, settings.batches.retry_max_s)
        self._poll_s = settings.batches.poll_s
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop().create_task(self._run_forever())

    async def wake(self) -> None:
        """Look for work now (a batch was created or cancelled)."""
        self._wake.set()

    async def _run_forever(self) -> None:
        while True:
            self._wake.clear()
            await self.runner.run_pending()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_s)


class EncoderCalls:
    """The ingress's calls to one model's Encoder deployment: one call per parcel of a big
    request, and small requests (one run's budget or less: queries) grouped into shared
    calls, since a call costs more CPU than their tokens (docs/decisions/scheduler.md)."""

    def __init__(self, handle: DeploymentHandle, model: ModelSettings) -> None:
        self.handle = handle
        self._small_tokens = model.scheduler.max_run_tokens

    async def embed(self, parcels: List[Parcel]) -> List[Result]:
        """The parcels' results, in order."""
        if len(parcels) == 1 and parcels[0].tokens <= self._small_tokens:
            return [await self._grouped(parcels[0])]
        return await _call_encoders(self.handle.embed, parcels)

    # Four calls in flight keep the encoder fed. A cancelled caller's share still runs: it
    # is small.
    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.0, max_concurrent_batches=4)
    async def _grouped(self, parcels: List[Parcel]) -> List[Result]:
        return (await _call_encoders(self.handle.embed_many, [parcels]))[0]


@serve.deployment(max_ongoing_requests=256, ray_actor_options={"num_cpus": 0.2})
@serve.ingress()
class Ingress:
    """HTTP front: validates, admits and tokenizes; sends each model's parcels to its
    encoders."""

    def __init__(self, settings: ServiceSettings, encoders: Dict[str, DeploymentHandle],
                 batches: DeploymentHandle) -> None:
        # Read on the replica, so the key is never part of the serialised application.
        self._api_key = load_api_key(settings.api_key_file)
        self._handles = list(encoders.values())
        self._batches = batches
        self._batch_store = BatchStore(settings.batches.storage)
        self.settings = settings
        metrics = IngressMetrics()
        services = []
        for model in settings.models():
            calls = EncoderCalls(encoders[model.deployment], model)
            kind = RerankService if kind_of(model) == "rerank" else EmbeddingsService
            services.append(kind.for_model(settings, calls.embed, model, metrics))
        self.models = ModelRouter(settings, services, metrics)

    async def _wake_batches(self) -> None:
        await self._batches.wake.remote()

    async def _ready(self) -> bool:
        """Every model's encoders answer (``/health``)."""
        try:
            answers = await asyncio.wait_for(asyncio.gather(
                *(handle.ping.remote() for handle in self._handles)), timeout=2.0)
        except Exception:
            return False
        return all(answers)

    def __serve_build_asgi_app__(self):
        settings = self.settings
        router = batch_router(self._batch_store, self._wake_batches, settings.batches,
                              settings.max_body_bytes)
        return build_app(self.models, self._ready, self._api_key, router)


async def _call_encoders(method, arguments: list) -> list:
    """One call per argument (the router spreads a big request's pieces over replicas),
    with Ray's failures as the service's errors."""
    try:
        return await asyncio.gather(*(method.remote(a) for a in arguments))
    except BackPressureError as exc:
        raise EmbeddingError(ErrorKind.UNAVAILABLE, "the encoders' queues are full; retry",
                             code="overloaded",
                             retry_after_s=max(1, round(exc.retry_after_s or 1))) from exc
    except (RayActorError, DeploymentUnavailableError) as exc:
        # A replica died or is restarting: the request is safe to retry.
        raise EmbeddingError(ErrorKind.UNAVAILABLE, "an encoder replica failed while "
                             "serving this request; retry", code="encoder_unavailable",
                             retry_after_s=1) from exc


# The Encoder's load for the autoscaler. Ray counts ongoing handle calls, and one grouped
# call carries up to 64 requests: the replicas count what they hold instead.
HELD_PARCELS = "held_parcels"


def scale_on_held_parcels(ctx: AutoscalingContext) -> Tuple[float, Dict[str, Any]]:
    """Ray's default rule (replicas = load / ``target_ongoing_requests``) with the parcels
    the Encoder replicas hold, plus the calls queued at handles, as the load.

    ``serve_config.yaml`` names it as the Encoder's ``autoscaling_config.policy``; Ray
    still applies the config's delays, factors and bounds. Until replicas report, Ray's
    default policy decides.
    """
    held = (ctx.aggregated_metrics or {}).get(HELD_PARCELS)
    if not held or ctx.current_num_replicas == 0:
        return replica_queue_length_autoscaling_policy(ctx)
    load = sum(held.values()) + (ctx.total_queued_requests or 0)
    return load / ctx.config.get_target_ongoing_requests(), {}


# Its name before 0.3: kept so operators' serve_config.yaml files keep working.
scale_on_held_batches = scale_on_held_parcels


def kind_of(model: ModelSettings) -> str:
    """What ``model`` serves ("embeddings", "rerank"), from its own files."""
    return ModelCard.from_folder(model_root(model)).kind


def app_builder(args: ServiceSettings) -> Application:
    """Build the application from ``serve_config.yaml``'s ``args`` (validated by Ray): an
    Encoder deployment per model, named by its ``deployment``.

    Each model's metadata is resolved here first, so a model that cannot be found fails
    the deployment at once with one clear message instead of failing replicas in a loop.
    """
    for model in args.models():
        kind_of(model)
    encoders = {model.deployment: Encoder.options(name=model.deployment).bind(model)
                for model in args.models()}
    return Ingress.bind(args, encoders, BatchWorker.bind(args, encoders))
