"""All options of the service in one pydantic model: YAML ``args`` are validated here once.

Defaults live here and nowhere else; ``serve_config.yaml`` carries only what an operator tunes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ServiceSettings(BaseModel):
    """Options of the embedding application (the ``args`` of ``serve_config.yaml``).

    Model
      model: a local folder in the Hugging Face layout, or a hub repo id downloaded with
        ``huggingface_hub`` (honours ``HF_HOME``, ``HF_TOKEN`` and ``HF_HUB_OFFLINE``).
      revision: hub revision (branch, tag or commit) to download; ignored for folders.
      onnx_file: ONNX file inside the model folder. ``onnx/model_fp16.onnx`` halves memory
        but is slower on most CPUs than fp32.
      quantize: "int8" serves a dynamically quantized copy of ``onnx_file`` (weights int8),
        built on first start and cached beside the model; faster on CPU, vectors within
        ~0.99 cosine of fp32. "none" serves the file as it is.
      served_model_name: the ``model`` reported in responses and ``/v1/models``.
      default_task: task used when a request names none (models with tasks only).
      max_tokens: cap on tokens per input, below the model's own limit (None = the model's).

    Limits (requests over them get a 400/413 before any work is queued)
      max_inputs: inputs per request (OpenAI allows 2048).
      max_request_tokens: tokens per request, summed over inputs. Bounds the work one caller
        can queue; 300k is OpenAI's per-request cap.
      max_body_bytes: request body size; sized so 2048 inputs near the token cap fit.

    Overload (bounded queues: a burst gets fast 429s, admitted requests keep their latency)
      max_inflight_tokens: tokens one ingress replica holds in flight (queued + running);
        a request that would exceed it gets 429 + Retry-After, unless nothing is in flight.
        Roughly throughput (tokens/s) x the queueing delay you accept; lower it on slow CPUs.
      max_inflight_requests: requests one ingress replica holds in flight, likewise. Keep
        the Ingress's ``max_ongoing_requests`` above it so Ray's own queue stays empty.
      request_timeout_s: time an admitted request may wait for the encoders before a 504.

    Late chunking
      late_chunking_overlap: tokens shared by consecutive windows when a late-chunked
        document is longer than the model's limit. Each token takes its state from the
        window where it sits farthest from an edge, so it keeps at least half this many
        tokens of context on each side; the cost is this many extra tokens per window
        (512 of 8192: 7%).

    Security
      api_key_file: file holding the API key; the environment variable
        ``EMBEDDINGS_API_KEY`` takes precedence. With neither, the service is open.

    Batching (trade latency against throughput)
      max_batch_tokens: padded tokens (longest input x inputs) per ONNX run. Measured
        here (2 cores): short queries run equally fast from 512 to 16384; long passages
        (100-500 tokens) run 2x faster per text at 512 than at 16384 (MiniLM 43.8 vs 21.2
        texts/s; jina-v3-sized 2.6 vs 1.5), as attention and cache misses grow with the
        batch. An input longer than the budget runs alone.
      sort_window_tokens: tokens an encoder takes from its queue at once; an ingress keeps
        at most this much in flight to the encoders (4 calls of a quarter each). The
        encoder sorts the whole window by length before packing runs, so runs hold inputs of
        near-equal length and pad little; work queued behind the window waits as long as it
        would in arrival order. Larger windows pad less, but return their requests together
        at the window's end and let a big request queue more ahead of a lone query.
        Must be >= max_batch_tokens. Measured (jina-v3-sized, 8 clients x 16 short
        queries): 4096 served 8-11% more than 512 (``benchmarks/served_ab.py``).
      batch_wait_timeout_s: how long the encoder waits for more requests to fill a batch.
        0 (measured best here) still batches under load: requests that arrive during an ONNX
        run join the next one; a wait only adds latency to a lone request.
      ort_threads: ONNX Runtime intra-op threads per encoder replica (None = the replica's
        ``num_cpus``, at least 1). More threads than CPUs makes every replica slower.
      parallel_runs: ONNX runs an encoder replica executes at once when several are queued,
        each on ``ort_threads // parallel_runs`` threads of a second session of the model; a
        lone input still runs on all ``ort_threads``. Parallel runs share no barrier, so a
        core taken for a moment (by Ray's own processes) stalls one run, not every thread.
        Measured (jina-v3-sized, 2 cores, 2 against 1, ``benchmarks/served_ab.py``): +6 to
        +10% at 8 clients x 16 short queries, +13 to +15% at 32 x 1, +9 to +34% for long
        passages at 4 x 16. Costs a second session: the replica's RSS roughly doubles
        (jina-v3-sized fp32: ~1.3 GB more). 1 runs one at a time. Capped at ``ort_threads``.

    Scheduling
      realtime_runs: run ONNX on real-time threads (SCHED_RR, the lowest real-time
        priority) where the OS permits it: root with CAP_SYS_NICE, or a real-time priority
        limit of at least 1 (``docker run --ulimit rtprio=1``); elsewhere a warning is logged
        and runs go at normal priority. ORT splits each matrix product statically over its
        threads, so a normal thread waking on a core (Ray's 100 Hz loops, the ingress)
        stalls the whole run; it cannot preempt a real-time thread. Measured (jina-v3-sized,
        2 cores, ``benchmarks/served_ab.py``, 2 rounds): a lone query's p50 19-20 ms lower,
        32 clients x 1 short query +7 to +14%, 8 x 16 within drift. The cost: while runs go,
        normal threads on those cores wait for them (the kernel keeps them 5%), so on a
        machine shared with other latency-sensitive work leave them a core or turn it off.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = "jinaai/jina-embeddings-v3"
    revision: str | None = None
    onnx_file: str = "onnx/model.onnx"
    quantize: Literal["none", "int8"] = "none"
    served_model_name: str = "jina-embeddings-v3"
    default_task: str = "text-matching"
    max_tokens: int | None = Field(default=None, ge=1)

    max_inputs: int = Field(default=2048, ge=1)
    max_request_tokens: int = Field(default=300_000, ge=1)
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)

    max_inflight_tokens: int = Field(default=65_536, ge=1)
    max_inflight_requests: int = Field(default=192, ge=1)
    request_timeout_s: float = Field(default=120.0, gt=0)

    late_chunking_overlap: int = Field(default=512, ge=0)

    api_key_file: str | None = None

    max_batch_tokens: int = Field(default=512, ge=1)
    sort_window_tokens: int = Field(default=4096, ge=1)
    batch_wait_timeout_s: float = Field(default=0.0, ge=0.0)
    ort_threads: int | None = Field(default=None, ge=1)
    parallel_runs: int = Field(default=2, ge=1)
    realtime_runs: bool = True

    @model_validator(mode="after")
    def _window_holds_a_run(self) -> ServiceSettings:
        if self.sort_window_tokens < self.max_batch_tokens:
            raise ValueError(f"sort_window_tokens ({self.sort_window_tokens}) must be at least "
                             f"max_batch_tokens ({self.max_batch_tokens})")
        return self
