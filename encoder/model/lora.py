"""A graph pass: LoRA adapters applied to activations instead of merged into weights.

jina-v3's export computes ``W + scale · L[task] @ R[task]`` for every LoRA'd weight on every
run, the 250002 x 1024 word-embedding table included, before it reaches a token: ~2.2 GB of
weights rebuilt per run, and none of them an initializer that int8 could quantize. Figures:
docs/decisions/real-graph.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from onnx import NodeProto, TensorProto, helper

from encoder.model.graph import Index, attribute, replace_nodes
from encoder.model.tensors import Tensors

# A LoRA'd weight of at most this many values (the token-type embedding's one row) is merged
# once per task when the copy is written: cheaper than any work on activations.
_SMALL_MERGE = 2048


@dataclass(frozen=True)
class LoraMerge:
    """``weight + scale * left[task] @ right[task]``, recomputed by the graph on every run.

    left: ``[tasks, rows, rank]``; right: ``[tasks, rank, cols]``; weight ``[rows, cols]``.
    """

    add: NodeProto
    weight: str
    left: str
    right: str
    scale: float
    task: str


def find_lora_merges(tensors: Tensors) -> list[LoraMerge]:
    """Every ``Add(W, Mul(Reshape?(MatMul(Gather(L, t), Gather(R, t))), s))`` of the graph,
    with W, L, R initializers and t a scalar graph input (jina's ``task_id``)."""
    index = Index(tensors)
    found = []
    for node in tensors.model.graph.node:
        if node.op_type != "Add":
            continue
        for weight, delta in (node.input, node.input[::-1]):
            merge = _match_merge(index, node, weight, delta)
            if merge is not None:
                found.append(merge)
                break
    return found


def _match_merge(index: Index, add: NodeProto, weight: str, delta: str) -> LoraMerge | None:
    proto = index.tensors.proto(weight)
    mul = index.op(delta, "Mul")
    if proto is None or len(proto.dims) != 2 or proto.data_type != TensorProto.FLOAT or not mul:
        return None
    scale = next((v for v in map(index.constant, mul.input) if v is not None and v.size == 1),
                 None)
    product = next((i for i in mul.input if index.constant(i) is None), None)
    if scale is None or product is None:
        return None
    reshape = index.op(product, "Reshape")
    if reshape is not None:
        target = index.constant(reshape.input[1])
        if target is None or tuple(target) != tuple(proto.dims):
            return None
        product = reshape.input[0]
    matmul = index.op(product, "MatMul")
    if matmul is None:
        return None
    gathers = [index.op(i, "Gather") for i in matmul.input]
    if any(g is None or attribute(g, "axis", 0) != 0 for g in gathers):
        return None
    (left, task), (right, task2) = (tuple(g.input) for g in gathers)
    if task != task2 or not index.is_scalar_input(task):
        return None
    try:
        tasks, rows, rank = index.tensors.shape(left)
        tasks2, rank2, cols = index.tensors.shape(right)
    except (KeyError, ValueError):
        return None
    if (tasks, rank, rows, cols) != (tasks2, rank2, *proto.dims):
        return None
    return LoraMerge(add, weight, left, right, float(scale.reshape(())), task)


def lora_to_activations(tensors: Tensors) -> int:
    """Apply each LoRA adapter to activations instead of merging it into its weight.

    ``x @ (W + s·L[t]@R[t])ᵀ`` becomes ``x @ Wᵀ + (x @ R[t]ᵀ) @ (s·L[t])ᵀ`` with ``Wᵀ`` a
    constant initializer; an embedding lookup ``(W + s·L[t]@R[t])[ids]`` becomes
    ``W[ids] + (s·L)[t, ids] @ R[t]``; a merge small enough is computed once per task. A merge
    with any other consumer is left as it is. Returns the merges rewritten.
    """
    index = Index(tensors)
    replaced: dict[int, list[NodeProto]] = {}  # id(node) -> the nodes standing in for it
    count = 0
    for merge in find_lora_merges(tensors):
        tasks, rows, _ = tensors.shape(merge.left)
        cols = tensors.shape(merge.right)[-1]
        merged = merge.add.output[0]
        users = index.consumers[merged]
        if rows * cols <= _SMALL_MERGE:
            replaced[id(merge.add)] = [_per_task(tensors, merge, tasks, rows, cols)]
        elif merged not in index.outputs and all(
                _is_linear(index, u, merged) or _is_lookup(u, merged) for u in users):
            for user in users:
                if user.op_type == "Transpose":
                    for matmul in index.consumers[user.output[0]]:
                        replaced[id(matmul)] = _linear(tensors, merge, matmul)
                else:
                    replaced[id(user)] = _lookup(tensors, index, merge, user)
        else:
            continue
        count += 1
    if count:
        replace_nodes(tensors, replaced)
    return count


def _is_linear(index: Index, user: NodeProto, merged: str) -> bool:
    """``Transpose(merged)`` used only as the weight of MatMuls."""
    if user.op_type != "Transpose" or list(attribute(user, "perm", [1, 0])) != [1, 0]:
        return False
    matmuls = index.consumers[user.output[0]]
    return bool(matmuls) and user.output[0] not in index.outputs and all(
        m.op_type == "MatMul" and m.input[1] == user.output[0]
        and m.input[0] != user.output[0] for m in matmuls)


def _is_lookup(user: NodeProto, merged: str) -> bool:
    return (user.op_type == "Gather" and user.input[0] == merged
            and user.input[1] != merged and attribute(user, "axis", 0) == 0)


def _per_task(tensors: Tensors, merge: LoraMerge, tasks: int, rows: int,
              cols: int) -> NodeProto:
    def make() -> np.ndarray:
        product = np.matmul(tensors.array(merge.left), tensors.array(merge.right))
        return tensors.array(merge.weight)[None] + np.float32(merge.scale) * product

    stack = tensors.add(f"{merge.weight}.per_task", (tasks, rows, cols), make)
    return helper.make_node("Gather", [stack, merge.task], [merge.add.output[0]],
                            name=f"{merge.add.name}/per_task", axis=0)


def _linear(tensors: Tensors, merge: LoraMerge, matmul: NodeProto) -> list[NodeProto]:
    tasks, rows, rank = tensors.shape(merge.left)
    cols = tensors.shape(merge.right)[-1]
    weight_t = _once(tensors, f"{merge.weight}.T", (cols, rows),
                     lambda: np.asarray(tensors.array(merge.weight)).T)
    right_t = _once(tensors, f"{merge.right}.T", (tasks, cols, rank),
                    lambda: np.asarray(tensors.array(merge.right)).transpose(0, 2, 1))
    left_t = _once(tensors, f"{merge.left}.scaled.T", (tasks, rank, rows),
                   lambda: (np.float32(merge.scale) * tensors.array(merge.left)
                            ).transpose(0, 2, 1))
    x, (y,) = matmul.input[0], matmul.output
    name = matmul.name or y
    return [
        helper.make_node("Gather", [right_t, merge.task], [f"{y}/lora_down_w"],
                         name=f"{name}/lora_down_w", axis=0),
        helper.make_node("Gather", [left_t, merge.task], [f"{y}/lora_up_w"],
                         name=f"{name}/lora_up_w", axis=0),
        helper.make_node("MatMul", [x, weight_t], [f"{y}/base"], name=f"{name}/base"),
        helper.make_node("MatMul", [x, f"{y}/lora_down_w"], [f"{y}/lora_down"],
                         name=f"{name}/lora_down"),
        helper.make_node("MatMul", [f"{y}/lora_down", f"{y}/lora_up_w"], [f"{y}/lora_up"],
                         name=f"{name}/lora_up"),
        helper.make_node("Add", [f"{y}/base", f"{y}/lora_up"], [y], name=f"{name}/lora_add"),
    ]


def _lookup(tensors: Tensors, index: Index, merge: LoraMerge,
            gather: NodeProto) -> list[NodeProto]:
    tasks, rows, rank = tensors.shape(merge.left)
    flat = _once(tensors, f"{merge.left}.scaled.flat", (tasks * rows, rank),
                 lambda: (np.float32(merge.scale) * tensors.array(merge.left)
                          ).reshape(tasks * rows, rank))
    ids, (y,), name = gather.input[1], gather.output, gather.name or gather.output[0]
    id_type = index.elem_type(ids)
    rows_const = _once(tensors, f"{name}/rows_per_task", (),
                       lambda: np.array(rows, dtype=np.int64), TensorProto.INT64)
    nodes = [helper.make_node("Mul", [merge.task, rows_const], [f"{y}/task_rows"],
                              name=f"{name}/task_rows")]
    offset = f"{y}/task_rows"
    if id_type != TensorProto.INT64:
        nodes.append(helper.make_node("Cast", [offset], [f"{y}/task_rows_cast"],
                                      name=f"{name}/task_rows_cast", to=id_type))
        offset = f"{y}/task_rows_cast"
    return [*nodes,
            helper.make_node("Add", [ids, offset], [f"{y}/lora_ids"], name=f"{name}/lora_ids"),
            helper.make_node("Gather", [flat, f"{y}/lora_ids"], [f"{y}/lora_rows"],
                             name=f"{name}/lora_rows", axis=0),
            helper.make_node("Gather", [merge.right, merge.task], [f"{y}/lora_up_w"],
                             name=f"{name}/lora_up_w", axis=0),
            helper.make_node("MatMul", [f"{y}/lora_rows", f"{y}/lora_up_w"], [f"{y}/lora_up"],
                             name=f"{name}/lora_up"),
            helper.make_node("Gather", [merge.weight, ids], [f"{y}/base"], name=f"{name}/base",
                             axis=0),
            helper.make_node("Add", [f"{y}/base", f"{y}/lora_up"], [y], name=f"{name}/lora_add")]


def _once(tensors: Tensors, name: str, shape: tuple[int, ...], make,
          dtype: int = TensorProto.FLOAT) -> str:
    """A derived initializer, declared the first time it is asked for."""
    if tensors.proto(name) is None:
        tensors.add(name, shape, make, dtype)
    return name


