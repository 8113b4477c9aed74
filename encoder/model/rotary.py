"""A graph pass: rotary position embeddings written out in primitive ops become one op.

jina-v3's export applies RoPE to q and k in every layer as ~20 small ops (slices of the
cos / sin caches, Expand, Neg, Concat, Mul, Add), each a pass over the activations.
``com.microsoft.RotaryEmbedding`` does the same rotation in one. Figures:
docs/decisions/real-graph.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from onnx import NodeProto, TensorProto, helper

from encoder.model.attention import MS_DOMAIN
from encoder.model.graph import Index, replace_nodes
from encoder.model.tensors import Tensors

_AS_IS = ("Reshape", "Unsqueeze", "Expand")


@dataclass(frozen=True)
class Rotary:
    """``x·cos + rotate_half(x)·sin`` over the last axis of a ``[b, t, heads, dim]`` tensor,
    with cos and sin rows 0..t-1 of two ``[positions, half]`` caches."""

    source: str  # x, the heads tensor before rotation
    output: str  # the rotated tensor, same shape as x
    half: int
    cos: str
    sin: str


def find_rotary(tensors: Tensors) -> list[Rotary]:
    """Every rotate-half RoPE of the graph whose caches are initializers."""
    index = Index(tensors)
    found = []
    for node in tensors.model.graph.node:
        if node.op_type == "Add":
            match = _match(index, node)
            if match is not None:
                found.append(match)
    return found


def _match(index: Index, add: NodeProto) -> Rotary | None:
    muls = [index.op(i, "Mul") for i in add.input]
    if any(m is None for m in muls):
        return None
    for direct, rotated in (muls, muls[::-1]):
        parts = _rotate_half(index, rotated)
        if parts is None:
            continue
        x_rot, sin_side = parts
        if x_rot not in direct.input:
            continue
        cos_side = direct.input[1] if direct.input[0] == x_rot else direct.input[0]
        half = _half(index, x_rot, rotated)
        cos, sin = _cache(index, cos_side, half), _cache(index, sin_side, half)
        if half is None or cos is None or sin is None:
            return None
        return _whole_heads(index, x_rot, add.output[0], half, cos, sin)
    return None


def _rotate_half(index: Index, mul: NodeProto) -> tuple[str, str] | None:
    """(x, the sin side) when ``mul`` is ``Concat(-x[..., h:], x[..., :h]) * sin``."""
    for concat_name, other in (mul.input, mul.input[::-1]):
        concat = index.op(concat_name, "Concat")
        if concat is None or len(concat.input) != 2:
            continue
        neg = index.op(concat.input[0], "Neg")
        low = index.op(concat.input[1], "Slice")
        high = index.op(neg.input[0], "Slice") if neg is not None else None
        if low is not None and high is not None and low.input[0] == high.input[0]:
            return low.input[0], other
    return None


def _half(index: Index, x: str, rotated: NodeProto) -> int | None:
    concat = next(index.op(i, "Concat") for i in rotated.input if index.op(i, "Concat"))
    low = index.op(concat.input[1], "Slice")
    start, end = index.constant(low.input[1]), index.constant(low.input[2])
    if start is None or end is None or int(start.reshape(-1)[0]) != 0:
        return None
    return int(end.reshape(-1)[0])


def _cache(index: Index, name: str, half: int | None) -> str | None:
    """The ``[positions, half]`` initializer that ``name`` takes rows 0.. of."""
    node = index.producer.get(name)
    while node is not None and node.op_type in _AS_IS:
        name, node = node.input[0], index.producer.get(node.input[0])
    if node is None or node.op_type != "Slice":
        return None
    starts = index.constant(node.input[1])
    axes = index.constant(node.input[3]) if len(node.input) > 3 else np.array([0])
    cache = node.input[0]
    proto = index.tensors.proto(cache)
    if (proto is None or len(proto.dims) != 2 or proto.dims[1] != half or starts is None
            or axes is None or int(starts.reshape(-1)[0]) != 0
            or int(axes.reshape(-1)[0]) != 0):
        return None
    return cache


def _whole_heads(index: Index, x_rot: str, rotated: str, half: int, cos: str,
                 sin: str) -> Rotary | None:
    """The rotation as a function of the whole heads tensor: ``x_rot`` is x itself or
    ``x[..., :2·half]``, put back together with ``x[..., 2·half:]`` by a Concat."""
    sliced = index.op(x_rot, "Slice")
    if sliced is None:
        return Rotary(x_rot, rotated, half, cos, sin)
    x = sliced.input[0]
    users = index.consumers[rotated]
    if len(users) != 1 or users[0].op_type != "Concat" or users[0].input[0] != rotated:
        return None
    rest = index.op(users[0].input[1], "Slice")
    if rest is None or rest.input[0] != x:
        return None
    return Rotary(x, users[0].output[0], half, cos, sin)


def fuse_rotary(tensors: Tensors, heads: int) -> int:
    """Replace each found RoPE by ``com.microsoft.RotaryEmbedding`` on the heads tensor
    viewed as ``[b, t, heads·dim]``. Returns how many were fused."""
    found = find_rotary(tensors)
    if not found:
        return 0
    index = Index(tensors)
    flat = tensors.add("rotary/flat_shape", (3,), lambda: np.array([0, 0, -1], np.int64),
                       TensorProto.INT64)
    split = tensors.add("rotary/head_shape", (4,), lambda: np.array([0, 0, heads, -1],
                                                                      np.int64),
                        TensorProto.INT64)
    start = tensors.add("rotary/first_position", (1,), lambda: np.zeros(1, np.int64),
                        TensorProto.INT64)
    replaced: dict[int, list[NodeProto]] = {}
    for rotary in found:
        out = rotary.output
        replaced[id(index.producer[out])] = [
            helper.make_node("Reshape", [rotary.source, flat], [f"{out}/flat"],
                             name=f"{out}/flat"),
            helper.make_node("RotaryEmbedding", [f"{out}/flat", start, rotary.cos, rotary.sin],
                             [f"{out}/rotated"], name=f"{out}/rotary", domain=MS_DOMAIN,
                             num_heads=heads, rotary_embedding_dim=2 * rotary.half,
                             interleaved=0),
            helper.make_node("Reshape", [f"{out}/rotated", split], [out], name=f"{out}/heads"),
        ]
    replace_nodes(tensors, replaced, MS_DOMAIN)
    return len(found)
