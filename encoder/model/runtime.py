"""One ONNX Runtime session: its inputs and outputs discovered, one padded run, pooled."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from encoder.model.attention import has_flash_branch
from encoder.model.card import ModelCard
from encoder.model.prepare import prepared_model, served_output
from encoder.model.quantize import quantized_model
from encoder.pooling import POOLERS, span_means

_KNOWN_INPUTS = {"input_ids", "attention_mask", "token_type_ids", "task_id"}
_NP_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}

logger = logging.getLogger(__name__)


class OnnxModel:
    """An ONNX encoder that maps token ids to token states ``[batch, seq, width]``, or a
    cross-encoder that maps them to scores ``[batch, labels]``.

    Input and output names come from the session, so jina-v3 (``task_id`` scalar,
    ``text_embeds``), plain BERT-style exports (``token_type_ids``, ``last_hidden_state``)
    and rerankers (``logits``) all serve.
    """

    def __init__(self, path: Path, threads: int) -> None:
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
        self.threads = threads
        self.session = ort.InferenceSession(os.fspath(path), options,
                                            providers=["CPUExecutionProvider"])
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
        outputs = self.session.get_outputs()
        self.output_name = served_output([(o.name, len(o.shape)) for o in outputs])
        if self.output_name is None:
            raise ValueError(f"{path}: no token-state (rank 3) or score (rank 2) output "
                             f"among {[o.name for o in outputs]}")
        shape = next(o.shape for o in self.session.get_outputs() if o.name == self.output_name)
        self.width: int | None = shape[-1] if isinstance(shape[-1], int) else None
        self.flash = has_flash_branch(path)

    def token_states(
        self, ids: np.ndarray, mask: np.ndarray, task_id: int | None, options=None,
        types: np.ndarray | None = None,
    ) -> np.ndarray:
        """Run the model on a padded ``[batch, seq]`` batch of one task: its token states
        (or scores); ``options``: ORT ``RunOptions`` (another thread may set their
        ``terminate`` to end the run); ``types``: token types (None: all 0)."""
        feed = {
            "input_ids": ids.astype(self._dtypes["input_ids"], copy=False),
            "attention_mask": mask.astype(self._dtypes["attention_mask"], copy=False),
        }
        if self.has_token_types:
            feed["token_type_ids"] = (np.zeros_like(ids) if types is None else types).astype(
                self._dtypes["token_type_ids"], copy=False)
        if self.has_task_id:
            if task_id is None:
                raise ValueError("this model needs a task_id")
            value = np.array(task_id, dtype=self._dtypes["task_id"])
            feed["task_id"] = value if self._task_is_scalar else np.full(
                (ids.shape[0],), task_id, dtype=self._dtypes["task_id"]
            )
        return self.session.run([self.output_name], feed, options)[0]

    def embed_run(self, sequences: list[np.ndarray], spans: list[np.ndarray | None],
                  task_id: int | None, pad_id: int, pooling: str, options=None,
                  pair_starts: list[int | None] | None = None,
                  ) -> tuple[list[np.ndarray], int, float]:
        """One run: pad, token states, pooled vectors per sequence (one per span with late
        chunking's spans; a cross-encoder's scores as they are); with the padded tokens and
        the ONNX run's seconds. ``pair_starts``: where each pair's second segment starts
        (its token type 1). Non-finite vectors raise: a broken session must fail its run,
        not reach clients."""
        ids, mask = pad(sequences, pad_id)
        types = None
        if pair_starts is not None and self.has_token_types:
            types = np.zeros_like(ids)
            for row, start in enumerate(pair_starts):
                if start is not None:
                    types[row, start : len(sequences[row])] = 1
        started = time.perf_counter()
        states = self.token_states(ids, mask, task_id, options, types)
        seconds = time.perf_counter() - started
        pooled = POOLERS[pooling](states, mask)
        if not np.isfinite(pooled).all():  # spans lie inside the mask: this covers them too
            raise FloatingPointError("the ONNX session returned non-finite values")
        return [pooled[row : row + 1] if spans[row] is None else span_means(states[row],
                                                                            spans[row])
                for row in range(len(sequences))], ids.size, seconds

    def canary(self, pad_id: int) -> np.ndarray:
        """Token states of a tiny input: the first run (ORT allocates and plans) and the
        health check's probe."""
        ids = np.full((1, 4), pad_id, dtype=np.int64)
        return self.token_states(ids, np.ones_like(ids), 0 if self.has_task_id else None)


def long_run_options():
    """ORT ``RunOptions`` for a long input's run: its ``terminate`` can end it, and the
    arena returns what the run grew it by, so a replica's memory falls back after a
    document instead of staying at its peak."""
    import onnxruntime as ort

    options = ort.RunOptions()
    options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    return options


def served_onnx(source: Path, card: ModelCard, int8: bool = False) -> Path:
    """The ONNX file a replica serves for ``source``: its prepared copy
    (``encoder/model/prepare.py``), and with ``int8`` the int8 copy of that."""
    onnx = prepared_model(source, card.attention_heads)
    return quantized_model(onnx, card) if int8 else onnx


def pad(sequences: Sequence[np.ndarray], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad to a ``[batch, longest]`` int64 id matrix and its attention mask."""
    longest = max(len(s) for s in sequences)
    ids = np.full((len(sequences), longest), pad_id, dtype=np.int64)
    mask = np.zeros((len(sequences), longest), dtype=np.int64)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = sequence
        mask[row, : len(sequence)] = 1
    return ids, mask
