"""One ONNX Runtime session and the discovery of its inputs and outputs."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

# Token-state outputs, best first. Jina's second output is a pooler, never an embedding.
_STATE_OUTPUTS = ("text_embeds", "last_hidden_state", "token_embeddings")
_KNOWN_INPUTS = {"input_ids", "attention_mask", "token_type_ids", "task_id"}
_NP_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}
# Round-robin, not FIFO, so replicas with more threads than cores still take turns; the
# lowest real-time priority: above every normal thread, below the kernel's own.
_REALTIME_PRIORITY = 1

logger = logging.getLogger(__name__)


class OnnxModel:
    """An ONNX encoder that maps token ids to token states ``[batch, seq, width]``.

    Input and output names come from the session, so jina-v3 (``task_id`` scalar,
    ``text_embeds``) and plain BERT-style exports (``token_type_ids``, ``last_hidden_state``)
    both serve.

    With ``realtime`` (where the OS permits it) ORT's threads and each run's calling thread
    run under SCHED_RR: no normal thread (Ray's own loops, the ingress) can preempt a run
    midway, which with ORT's statically split work would stall every thread of the run.
    """

    def __init__(self, path: Path, threads: int, realtime: bool = False) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # ORT ignores OMP_* variables: its own pools are the only knobs, and one run at a
        # time per replica means inter-op parallelism only adds contention.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Idle ORT threads spin for a while by default, burning the cores the proxy, ingress
        # and tokenizer need between runs; on a small machine that costs more than it saves.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.realtime = realtime and _realtime_permitted()
        with _realtime(self.realtime):  # ORT's pool threads inherit their creator's policy
            self.session = ort.InferenceSession(
                os.fspath(path), options, providers=["CPUExecutionProvider"]
            )
        inputs = {i.name: i for i in self.session.get_inputs()}
        unknown = set(inputs) - _KNOWN_INPUTS
        missing = {"input_ids", "attention_mask"} - set(inputs)
        if unknown or missing:
            raise ValueError(
                f"{path}: unsupported ONNX inputs (unknown {sorted(unknown)}, "
                f"missing {sorted(missing)})"
            )
        self._dtypes = {name: _NP_TYPES.get(i.type, np.int64) for name, i in inputs.items()}
        self.has_token_types = "token_type_ids" in inputs
        self.has_task_id = "task_id" in inputs
        self._task_is_scalar = self.has_task_id and len(inputs["task_id"].shape) == 0
        self.output_name = _state_output(self.session.get_outputs(), path)
        shape = next(o.shape for o in self.session.get_outputs() if o.name == self.output_name)
        self.width: int | None = shape[-1] if isinstance(shape[-1], int) else None

    def token_states(
        self, ids: np.ndarray, mask: np.ndarray, task_id: int | None
    ) -> np.ndarray:
        """Run the model on a padded ``[batch, seq]`` batch of one task."""
        feed = {
            "input_ids": ids.astype(self._dtypes["input_ids"], copy=False),
            "attention_mask": mask.astype(self._dtypes["attention_mask"], copy=False),
        }
        if self.has_token_types:
            feed["token_type_ids"] = np.zeros_like(ids, dtype=self._dtypes["token_type_ids"])
        if self.has_task_id:
            if task_id is None:
                raise ValueError("this model needs a task_id")
            value = np.array(task_id, dtype=self._dtypes["task_id"])
            feed["task_id"] = value if self._task_is_scalar else np.full(
                (ids.shape[0],), task_id, dtype=self._dtypes["task_id"]
            )
        with _realtime(self.realtime):
            return self.session.run([self.output_name], feed)[0]


@contextmanager
def _realtime(on: bool) -> Iterator[None]:
    """Run the block on this thread under SCHED_RR, then restore its policy (and nice)."""
    if not on:
        yield
        return
    policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(_REALTIME_PRIORITY))
    try:
        yield
    finally:
        os.sched_setscheduler(0, policy, param)


def _realtime_permitted() -> bool:
    if not hasattr(os, "sched_setscheduler"):  # not Linux
        logger.warning("realtime_runs: no real-time scheduling on this OS; normal priority")
        return False
    try:
        with _realtime(True):
            return True
    except PermissionError:
        logger.warning("realtime_runs: real-time scheduling is not permitted here (it needs "
                       "root with CAP_SYS_NICE, or a real-time priority limit of at least 1, "
                       "e.g. docker run --ulimit rtprio=1); normal priority")
        return False


def _state_output(outputs, path: Path) -> str:
    names = [o.name for o in outputs]
    for name in _STATE_OUTPUTS:
        if name in names:
            return name
    for output in outputs:
        if len(output.shape) == 3:
            return output.name
    raise ValueError(f"{path}: no token-state output (rank 3) among {names}")
