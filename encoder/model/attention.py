"""A graph pass: attention written out in primitive ops becomes ONNX Runtime's fused op.

PyTorch exports of rotary encoders (jina-v3's among them) write attention as
``Einsum(bthd,bshd->bhts)`` -> add a padding mask -> ``Softmax`` -> ``Einsum(bhts,bshd->bthd)``.
ONNX Runtime runs that as four big ops that each write ``[batch, heads, n, n]`` floats; its
``com.microsoft.MultiHeadAttention`` computes the same in one op. Without a padding mask
it runs ORT's flash kernel, which never holds the ``[heads, n, n]`` scores: a run with no
padding (a lone input, a long document) takes that branch of an ``If``, a padded batch the
masked one. Figures: docs/decisions/real-graph.md, docs/decisions/long-documents.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import GraphProto, NodeProto, TensorProto, helper

from encoder.model.graph import Index, attribute, replace_nodes
from encoder.model.tensors import Tensors

MS_DOMAIN = "com.microsoft"


@dataclass(frozen=True)
class Attention:
    """One attention block: ``softmax(scale * q·kᵀ + mask) · v`` over ``[b, t, heads, dim]``."""

    scores: NodeProto  # Einsum bthd,bshd->bhts
    context: NodeProto  # Einsum bhts,bshd->bthd
    query: str
    key: str
    value: str
    scale: float
    mask_input: str  # the graph's [batch, seq] attention mask
    mask_value: float  # what the graph adds for padding


def find_attention(tensors: Tensors) -> list[Attention]:
    """Every Einsum attention whose mask is the graph's padding mask."""
    index = Index(tensors)
    found = []
    for node in tensors.model.graph.node:
        if node.op_type == "Einsum" and _equation(node) == "bhts,bshd->bthd":
            match = _match(index, node)
            if match is not None:
                found.append(match)
    return found


def _equation(node: NodeProto) -> str:
    value = attribute(node, "equation", b"")
    return (value.decode() if isinstance(value, bytes) else value).replace(" ", "")


def _match(index: Index, context: NodeProto) -> Attention | None:
    softmax = index.op(context.input[0], "Softmax")
    if softmax is None or attribute(softmax, "axis", -1) not in (-1, 3):
        return None
    add = index.op(softmax.input[0], "Add")
    if add is None:
        return None
    pairs = [(index.op(s, "Einsum"), m) for s, m in (add.input, add.input[::-1])]
    scores, mask_name = next(((e, m) for e, m in pairs
                              if e is not None and _equation(e) == "bthd,bshd->bhts"),
                             (None, ""))
    if scores is None:
        return None
    mask = _padding_mask(index, mask_name)
    if mask is None:
        return None
    query, query_scale = _unscaled(index, scores.input[0])
    key, key_scale = _unscaled(index, scores.input[1])
    return Attention(scores, context, query, key, context.input[1], query_scale * key_scale,
                     *mask)


def _unscaled(index: Index, name: str) -> tuple[str, float]:
    """``x`` and ``s`` for ``name = x * s`` with s a constant scalar, else ``name``, 1."""
    mul = index.op(name, "Mul")
    if mul is not None:
        for x, s in (mul.input, mul.input[::-1]):
            value = index.constant(s)
            if value is not None and value.size == 1 and index.constant(x) is None:
                return x, float(value.reshape(()))
    return name, 1.0


def _padding_mask(index: Index, name: str) -> tuple[str, float] | None:
    """(the mask input, its fill value) if ``name`` is ``[b, 1, 1, s]`` = 0 where the graph's
    attention mask is 1 and a constant where it is 0."""
    node = index.producer.get(name)
    while node is not None and node.op_type in ("Reshape", "Unsqueeze"):
        node = index.producer.get(node.input[0])
    if node is None or node.op_type != "Where":
        return None
    condition, kept, filled = node.input
    cast = index.op(condition, "Cast")
    zero, fill = index.constant(kept), _filled(index, filled)
    if (cast is None or cast.input[0] not in index.inputs or zero is None or fill is None
            or np.any(zero != 0)):
        return None
    return cast.input[0], fill


def _filled(index: Index, name: str) -> float | None:
    value = index.constant(name)
    if value is None:
        node = index.op(name, "ConstantOfShape")
        if node is None:
            return None
        from onnx import numpy_helper
        value = numpy_helper.to_array(attribute(node, "value"))
    values = np.unique(value)
    return float(values[0]) if values.size == 1 else None


def fuse_attention(tensors: Tensors, heads: int) -> int:
    """Replace each found attention by ``com.microsoft.MultiHeadAttention`` (``heads`` heads):
    unmasked (flash) when the run's attention mask is all ones, else with the padding mask as
    its ``key_padding_mask``. Returns how many were fused."""
    found = find_attention(tensors)
    if not found:
        return 0
    flat = tensors.add("attention/flat_shape", (3,), lambda: np.array([0, 0, -1], np.int64),
                       TensorProto.INT64)
    split = tensors.add("attention/head_shape", (4,), lambda: np.array([0, 0, heads, -1],
                                                                         np.int64),
                        TensorProto.INT64)
    masks: dict[str, tuple[str, str]] = {}
    replaced: dict[int, list[NodeProto]] = {}
    for attention in found:
        nodes = []
        if attention.mask_input not in masks:
            masks[attention.mask_input] = _mask_nodes(tensors, attention.mask_input, nodes)
        mask32, unpadded = masks[attention.mask_input]
        (out,) = attention.context.output
        name = attention.context.name or out
        flattened = []
        for role, value in (("q", attention.query), ("k", attention.key),
                            ("v", attention.value)):
            flattened.append(f"{out}/{role}")
            nodes.append(helper.make_node("Reshape", [value, flat], [f"{out}/{role}"],
                                          name=f"{name}/{role}"))
        nodes += [
            helper.make_node("If", [unpadded], [f"{out}/mha"], name=f"{name}/mha",
                             then_branch=_branch(attention, heads, f"{out}/flash", flattened),
                             else_branch=_branch(attention, heads, f"{out}/masked",
                                                 [*flattened, "", mask32])),
            helper.make_node("Reshape", [f"{out}/mha", split], [out], name=f"{name}/heads"),
        ]
        replaced[id(attention.context)] = nodes
    replace_nodes(tensors, replaced, MS_DOMAIN)
    return len(found)


def _branch(attention: Attention, heads: int, name: str, inputs: list[str]) -> GraphProto:
    """A one-node graph: ``MultiHeadAttention`` over ``inputs`` (q, k, v[, "", mask])."""
    mha = helper.make_node("MultiHeadAttention", inputs, [name], name=name, domain=MS_DOMAIN,
                           num_heads=heads, scale=attention.scale,
                           mask_filter_value=attention.mask_value)
    return helper.make_graph([mha], name, [], [
        helper.make_tensor_value_info(name, TensorProto.FLOAT, None)])


def _mask_nodes(tensors: Tensors, mask: str, nodes: list[NodeProto]) -> tuple[str, str]:
    """Nodes computing, once per graph, the mask as int32 and whether it is all ones."""
    one = tensors.add(f"{mask}/one", (), lambda: np.array(1, np.int32), TensorProto.INT32)
    nodes += [
        helper.make_node("Cast", [mask], [f"{mask}/int32"], name=f"{mask}/int32",
                         to=TensorProto.INT32),
        helper.make_node("ReduceMin", [f"{mask}/int32"], [f"{mask}/min"], name=f"{mask}/min",
                         keepdims=0),
        helper.make_node("Equal", [f"{mask}/min", one], [f"{mask}/unpadded"],
                         name=f"{mask}/unpadded"),
    ]
    return f"{mask}/int32", f"{mask}/unpadded"


def has_flash_branch(path: Path) -> bool:
    """Whether the graph at ``path`` runs unpadded attention without the ``[n, n]`` scores:
    it holds ``fuse_attention``'s unmasked ``MultiHeadAttention`` branches."""
    graph = onnx.load(os.fspath(path), load_external_data=False).graph
    return any(node.op_type == "If" and any(
        inner.op_type == "MultiHeadAttention" and len(inner.input) == 3
        for a in node.attribute if a.name == "then_branch" for inner in a.g.node)
        for node in graph.node)
