"""Running a graph pass on a model folder and comparing what the graph computes before and
after, for the tests of ``encoder/model/``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from encoder.model.tensors import Tensors

TASKS = range(5)


def passed(source: Path, target: Path, *passes: Callable[[Tensors], int]) -> tuple[Path, list]:
    """``source`` with ``passes`` applied, written to ``target``; and what each returned."""
    tensors = Tensors.load(source)
    counts = [apply(tensors) for apply in passes]
    target.parent.mkdir(parents=True, exist_ok=True)
    tensors.save(target)
    return target, counts


def op_counts(path: Path) -> Counter:
    """Op types in the graph and its subgraphs (an ``If``'s branches)."""
    counts: Counter = Counter()
    graphs = [onnx.load(str(path), load_external_data=False).graph]
    while graphs:
        for node in graphs.pop().node:
            counts[node.op_type] += 1
            for attr in node.attribute:
                graphs.extend([attr.g] if attr.HasField("g") else attr.graphs)
    return counts


def padded_batch(rows: int = 3, length: int = 20, seed: int = 1) -> tuple[np.ndarray, ...]:
    """Random ids, right-padded to different lengths (the first row is full)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, 250000, (rows, length))
    mask = np.ones_like(ids)
    for row in range(1, rows):
        mask[row, length // (row + 1):] = 0
    ids[mask == 0] = 1
    return ids, mask


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def states(model: ort.InferenceSession, ids: np.ndarray, mask: np.ndarray, task: int,
           outputs: list[str] | None = None) -> list[np.ndarray]:
    return model.run(outputs, {"input_ids": ids, "attention_mask": mask,
                               "task_id": np.array(task, dtype=np.int64)})


def assert_same_states(before: Path, after: Path, tasks=TASKS, atol: float = 1e-5,
                       batch: tuple[np.ndarray, ...] | None = None) -> None:
    """Every output both graphs have agrees for each task (token states: at every unpadded
    position)."""
    ids, mask = batch or padded_batch()
    old, new = session(before), session(after)
    known = {o.name for o in old.get_outputs()}
    names = [o.name for o in new.get_outputs() if o.name in known]
    for task in tasks:
        for name, a, b in zip(names, states(old, ids, mask, task, names),
                              states(new, ids, mask, task, names), strict=True):
            keep = mask.astype(bool) if a.ndim == 3 else slice(None)
            np.testing.assert_allclose(b[keep], a[keep], atol=atol, rtol=1e-4,
                                       err_msg=f"{name}, task {task}")
