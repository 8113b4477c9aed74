"""All options of the service in one pydantic model: YAML ``args`` are validated here once.

Defaults live here and nowhere else; ``serve_config.yaml`` carries only what an operator tunes.
Options renamed since a release keep their old names as deprecated aliases (``_RENAMED``).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

logger = logging.getLogger(__name__)


def _renamed(data: Any, renamed: dict[str, str], where: str) -> Any:
    """``data`` with deprecated keys moved to their new names, each logged once per load."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    for old, new in renamed.items():
        if old in data:
            if new in data:
                raise ValueError(f"{where}{old} is the deprecated name of {where}{new}: "
                                 "give one of them")
            logger.warning("%s%s is deprecated; use %s%s", where, old, where, new)
            data[new] = data.pop(old)
    return data


class SchedulerSettings(BaseModel):
    """How an encoder replica's scheduler groups work into ONNX runs (``args.scheduler``):
    latency against throughput.

    The figures behind each default are in docs/decisions/scheduler.md.

    max_run_tokens: padded tokens (longest input x inputs) per ONNX run. Long passages run
      faster per text in small runs (attention and cache misses grow with the run); short
      queries are flat from 512 up. An input longer than the budget is a long input: it
      runs alone, from the encoder's long queue (one at a time, on all ``ort_threads``,
      while short work goes on beside it), if its run fits the replica's memory.
    sort_window_tokens: tokens the scheduler takes from its queue at once. It sorts them all
      by length before packing runs, so runs hold inputs of near-equal length and pad
      little. Larger windows pad less but return their requests together at the window's
      end. The ingress splits requests into parcels of at most this many tokens, so a big
      request queues at most this much ahead of a query arriving after it. Must be at
      least ``max_run_tokens``.
    call_wait_s: how long the Encoder waits for more calls before handing what it has to
      the scheduler (Ray's ``@serve.batch`` ``batch_wait_timeout_s``). 0 still groups under
      load (calls that arrive during a run join the next window); a wait only delays a lone
      request.
    ort_threads: ONNX Runtime threads per encoder replica (None: the replica's
      ``num_cpus``, rounded, at least 1). More threads than CPUs slows every replica.
    parallel_runs: ONNX runs a replica executes at once when its window holds several,
      each on its own thread of the parallel session (``ort_threads // parallel_runs`` threads). A
      run shares no barrier with the others, so a core taken for a moment (by Ray's own
      processes, the ingress) stalls one run, not all: +15-20% for one-query requests on
      jina-v3. The cost: the second session holds its own packed weights (a jina-v3 replica
      peaks at 2.8 GB instead of 1.5). 1 runs one at a time on all ``ort_threads``. Capped at
      ``ort_threads``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_run_tokens: int = Field(default=512, ge=1)
    sort_window_tokens: int = Field(default=4096, ge=1)
    call_wait_s: float = Field(default=0.0, ge=0.0)
    ort_threads: int | None = Field(default=None, ge=1)
    parallel_runs: int = Field(default=2, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _deprecated_names(cls, data: Any) -> Any:
        return _renamed(data, {"max_batch_tokens": "max_run_tokens",
                               "batch_wait_timeout_s": "call_wait_s"}, "scheduler.")

    @model_validator(mode="after")
    def _window_holds_a_run(self) -> SchedulerSettings:
        if self.sort_window_tokens < self.max_run_tokens:
            raise ValueError(f"sort_window_tokens ({self.sort_window_tokens}) must be at least "
                             f"max_run_tokens ({self.max_run_tokens})")
        return self


class BatchApiSettings(BaseModel):
    """The OpenAI Batch API (``args.batches``): ``/v1/files`` and ``/v1/batches``.

    storage: where files and batch state live: a folder, or any URI ``pyarrow.fs`` opens
      (``s3://bucket/prefix``, ``gs://...``). Every replica that serves the routes or runs
      batches must reach the same place: on a cluster, an object store or a shared volume.
    max_file_bytes: largest upload (OpenAI's limit is 200 MB); bigger ones get a 413.
    poll_s: how often the batch runner looks for work it was not woken for (a batch left
      by a restart, one created through another ingress replica).
    completion_window_s: how long a batch may take. Clients ask for OpenAI's only window,
      "24h"; a batch not finished by then ends ``expired``: the lines answered stay in its
      output file, the rest go to its error file as ``batch_expired``.
    retry_max_s: longest back-off between tries of a line the encoders refused for
      overload (429, 503) or could not answer (5xx); a line's own 4xx is final.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    storage: str = "~/.cache/jina-embeddings-serve/batches"
    max_file_bytes: int = Field(default=200 * 1024 * 1024, ge=1)
    poll_s: float = Field(default=5.0, gt=0)
    completion_window_s: float = Field(default=24 * 3600, gt=0)
    retry_max_s: float = Field(default=30.0, gt=0)


class ModelSettings(BaseModel):
    """One model the application serves, and the encoder deployment that runs it.

    model: a local folder in the Hugging Face layout, or a hub repo id downloaded with
      ``huggingface_hub`` (honours ``HF_HOME``, ``HF_TOKEN`` and ``HF_HUB_OFFLINE``).
    revision: hub revision (branch, tag or commit) to download; ignored for folders.
    onnx_file: ONNX file inside the model folder. ``onnx/model_fp16.onnx`` halves memory but
      is slower on most CPUs than fp32.
    quantize: "int8" serves a dynamically quantized copy of the prepared graph (its weight
      matrices int8), built on first start and cached beside the model; faster on CPU
      (jina-v3 on AVX2: 1.6x fp32 at batch 1, 1.3x at 32), vectors close to fp32's. "none"
      serves the prepared graph in fp32 (``encoder/model/prepare.py``).
    served_model_name: the model's name in requests (``model``), responses and
      ``/v1/models``.
    aliases: other names requests may give it.
    default_task: task used when a request names none (models with tasks only).
    max_tokens: cap on tokens per input (a rerank pair: query and document), below the
      model's own limit (None = the model's).
    deployment: its encoder deployment's name, under which serve_config.yaml's
      ``deployments`` give it replicas or autoscaling, ``num_cpus`` and ``memory``. The main
      model's is ``Encoder``; every model has its own.
    scheduler: how its encoder groups work into ONNX runs (``SchedulerSettings``).

    What the model does (embeddings, or rerank for a cross-encoder with one logit) is read
    from its own files (``encoder/model/card.py``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = "jinaai/jina-embeddings-v3"
    revision: str | None = None
    onnx_file: str = "onnx/model.onnx"
    quantize: Literal["none", "int8"] = "none"
    served_model_name: str = "jina-embeddings-v3"
    aliases: tuple[str, ...] = ()
    default_task: str = "text-matching"
    max_tokens: int | None = Field(default=None, ge=1)
    deployment: str = Field(default="Encoder", pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")
    scheduler: SchedulerSettings = SchedulerSettings()

    def input_token_limit(self, model_limit: int) -> int:
        """Most tokens one input may have: the model's own limit, or ``max_tokens`` below it."""
        return min(model_limit, self.max_tokens or model_limit)

    def names(self) -> tuple[str, ...]:
        """Every name requests may give this model."""
        return (self.served_model_name, *self.aliases)


class ServiceSettings(ModelSettings):
    """Options of the application (the ``args`` of ``serve_config.yaml``).

    Models: the fields of ``ModelSettings`` describe the main model (its deployment is
      ``Encoder``); ``extra_models`` lists more, each a ``ModelSettings`` with its own
      ``served_model_name`` and ``deployment`` (a reranker beside jina-v3, say). Requests
      pick one by ``model``; the rest of these options hold for all of them.

    Limits (requests over them get a 400/413 before any work is queued)
      max_inputs: inputs per request (OpenAI allows 2048); documents per rerank request.
      max_request_tokens: tokens per request, summed over inputs. Bounds the work one caller
        can queue; 300k is OpenAI's per-request cap.
      max_body_bytes: request body size; sized so 2048 inputs near the token cap fit.

    Overload (bounded queues: a burst gets fast 429s, admitted requests keep their latency)
      max_inflight_tokens: tokens one ingress replica holds in flight (queued + running);
        a request that would exceed it gets 429 + Retry-After, unless nothing is in flight.
        Roughly throughput (tokens/s) x the queueing delay you accept; lower it on slow CPUs.
        Checked first on an estimate from the body's size, so an overloaded service refuses
        before tokenizing; the exact count then holds the budget.
      max_inflight_requests: requests one ingress replica holds in flight, likewise. Keep
        the Ingress's ``max_ongoing_requests`` above it so Ray's own queue stays empty.
      request_timeout_s: time an admitted request may wait for the encoders before a 504,
        on top of the time its own work takes at the throughput measured so far (an
        8192-token jina-v3 document takes ~1.5 min on 2 cores).

    Late chunking
      late_chunking_overlap: tokens shared by consecutive windows when a late-chunked
        document is longer than the model's limit. Each token takes its state from the
        window where it sits farthest from an edge, so it keeps at least half this many
        tokens of context on each side; the cost is this many extra tokens per window.

    Security
      api_key_file: file holding the API key; the environment variable
        ``EMBEDDINGS_API_KEY`` takes precedence. With neither, the service is open.

    Scheduler: ``scheduler`` (``SchedulerSettings``; ``batching`` is its deprecated name).
    Batch API: ``batches`` (``BatchApiSettings``).
    """

    max_inputs: int = Field(default=2048, ge=1)
    max_request_tokens: int = Field(default=300_000, ge=1)
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)

    max_inflight_tokens: int = Field(default=65_536, ge=1)
    max_inflight_requests: int = Field(default=192, ge=1)
    request_timeout_s: float = Field(default=120.0, gt=0)

    late_chunking_overlap: int = Field(default=512, ge=0)

    api_key_file: str | None = None

    batches: BatchApiSettings = BatchApiSettings()
    extra_models: tuple[ModelSettings, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _deprecated_names(cls, data: Any) -> Any:
        return _renamed(data, {"batching": "scheduler"}, "")

    @model_validator(mode="after")
    def _models_named_apart(self) -> ServiceSettings:
        for extra in self.extra_models:
            if not {"served_model_name", "deployment"} <= extra.model_fields_set:
                raise ValueError(f"extra_models: {extra.model!r} needs its own "
                                 "served_model_name and deployment")
        names = [name for model in self.models() for name in model.names()]
        deployments = [model.deployment for model in self.models()]
        for kind, values in (("model name or alias", names), ("deployment", deployments)):
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                raise ValueError(f"each {kind} must be unique; repeated: {repeated}")
        return self

    def main_model(self) -> ModelSettings:
        """The main model's settings alone (its deployment is ``Encoder``)."""
        return ModelSettings(**{name: getattr(self, name) for name in ModelSettings.model_fields})

    def models(self) -> list[ModelSettings]:
        """Every model the application serves: the main one first."""
        return [self.main_model(), *self.extra_models]
