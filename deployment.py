"""Ray Serve wiring only: an ONNX ``Encoder`` deployment, a FastAPI ``Ingress``, a builder.

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
from encoder.ingress.service import EmbeddingsService
from encoder.metrics import EncoderMetrics
from encoder.model.files import resolve_model
from encoder.parcels import Parcel
from encoder.scheduling.scheduler import Result, Scheduler
from encoder.settings import ServiceSettings


def replica_threads(settings: ServiceSettings) -> int:
    """ORT threads for this replica: ``scheduler.ort_threads``, else its CPUs rounded."""
    if settings.scheduler.ort_threads:
        return settings.scheduler.ort_threads
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    return max(1, round(cpus))


@serve.deployment(max_ongoing_requests=64, ray_actor_options={"num_cpus": 1})
class Encoder:
    """ONNX Runtime behind the scheduler; ``@serve.batch`` hands it the calls that arrive
    together, so concurrent requests share windows and runs."""

    def __init__(self, settings: ServiceSettings) -> None:
        metrics = EncoderMetrics()
        # What serve_config.yaml declared (ray_actor_options.memory): long inputs must fit it.
        memory = ray.get_runtime_context().get_assigned_resources().get("memory")
        self.scheduler = Scheduler.load(settings, replica_threads(settings),
                                        on_run=metrics.run, on_wait=metrics.waited,
                                        memory=memory)
        self._enqueue.set_batch_wait_timeout_s(settings.scheduler.call_wait_s)

    async def embed(self, parcel: Parcel) -> Result:
        """Pooled vectors of one parcel (an ``EmbeddingError`` if its run failed).

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
    resuming what a restart left, with the encoders' background queue doing the work."""

    async def __init__(self, settings: ServiceSettings, encoder: DeploymentHandle) -> None:
        self._encoder = encoder
        service = EmbeddingsService.for_model(settings, self._embed)
        self.runner = BatchRunner(BatchStore(settings.batches.storage), service,
                                  settings.batches.max_file_bytes, settings.batches.retry_max_s)
        self._poll_s = settings.batches.poll_s
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop().create_task(self._run_forever())

    async def _embed(self, parcels: List[Parcel]) -> List[Result]:
        return await _call_encoders(self._encoder.embed_background, parcels)

    async def wake(self) -> None:
        """Look for work now (a batch was created or cancelled)."""
        self._wake.set()

    async def _run_forever(self) -> None:
        while True:
            self._wake.clear()
            await self.runner.run_pending()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_s)


@serve.deployment(max_ongoing_requests=256, ray_actor_options={"num_cpus": 0.2})
@serve.ingress()
class Ingress:
    """HTTP front: validates, admits and tokenizes; sends parcels to the encoders."""

    def __init__(self, settings: ServiceSettings, encoder: DeploymentHandle,
                 batches: DeploymentHandle) -> None:
        # Read on the replica, so the key is never part of the serialised application.
        self._api_key = load_api_key(settings.api_key_file)
        self._encoder = encoder
        self._batches = batches
        self._batch_store = BatchStore(settings.batches.storage)
        self.service = EmbeddingsService.for_model(settings, self._embed)
        self._small_tokens = settings.scheduler.max_run_tokens

    async def _embed(self, parcels: List[Parcel]) -> List[Result]:
        if len(parcels) == 1 and parcels[0].tokens <= self._small_tokens:
            return [await self._embed_grouped(parcels[0])]
        return await _call_encoders(self._encoder.embed, parcels)

    # Small requests (one run's budget or less: queries) share a handle call, since a call
    # costs more CPU than their tokens (docs/decisions/scheduler.md). Four calls in flight
    # keep the encoder fed. A cancelled caller's share still runs: it is small.
    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.0, max_concurrent_batches=4)
    async def _embed_grouped(self, parcels: List[Parcel]) -> List[Result]:
        return (await _call_encoders(self._encoder.embed_many, [parcels]))[0]

    async def _wake_batches(self) -> None:
        await self._batches.wake.remote()

    async def _ready(self) -> bool:
        try:
            return await asyncio.wait_for(self._encoder.ping.remote(), timeout=2.0)
        except Exception:
            return False

    def __serve_build_asgi_app__(self):
        settings = self.service.settings
        router = batch_router(self._batch_store, self._wake_batches, settings.batches,
                              settings.max_body_bytes)
        return build_app(self.service, self._ready, self._api_key, router)


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


def app_builder(args: ServiceSettings) -> Application:
    """Build the application from ``serve_config.yaml``'s ``args`` (validated by Ray).

    The model's metadata is resolved here first, so a model that cannot be found fails the
    deployment at once with one clear message instead of failing replicas in a loop.
    """
    resolve_model(args.model, args.onnx_file, args.revision, with_onnx=False)
    encoder = Encoder.bind(args)
    return Ingress.bind(args, encoder, BatchWorker.bind(args, encoder))
