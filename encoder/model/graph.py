"""What graph passes share, and the small passes.

A pass (here, ``lora.py``, ``rotary.py``, ``attention.py``) finds a pattern by the graph's
structure, never by node names, rewrites every instance into an equivalent, cheaper form and
returns how many it rewrote; a graph without the pattern is left as it is. Passes edit
``Tensors.model`` in place and declare the initializers they need as functions of existing
ones, computed when the copy is written. Why and what each saves: docs/decisions/real-graph.md.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from onnx import NodeProto, TensorProto, helper

from encoder.model.tensors import Tensors


class Index:
    """Who produces and who consumes each value of a graph, and its constant values."""

    def __init__(self, tensors: Tensors) -> None:
        self.tensors = tensors
        graph = tensors.model.graph
        self.producer: dict[str, NodeProto] = {o: n for n in graph.node for o in n.output}
        self.consumers: dict[str, list[NodeProto]] = defaultdict(list)
        for node in graph.node:
            for name in node.input:
                self.consumers[name].append(node)
        self.inputs = {i.name: i for i in graph.input}
        self.outputs = {o.name for o in graph.output}

    def constant(self, name: str) -> np.ndarray | None:
        """The value of an initializer or a Constant node's output, else None."""
        if self.tensors.proto(name) is not None:
            return np.asarray(self.tensors.array(name))
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            value = next((a for a in node.attribute if a.name == "value"), None)
            if value is not None:
                from onnx import numpy_helper
                return numpy_helper.to_array(value.t)
        return None

    def op(self, name: str, op_type: str) -> NodeProto | None:
        """The node producing ``name`` if it is an ``op_type``."""
        node = self.producer.get(name)
        return node if node is not None and node.op_type == op_type else None

    def is_scalar_input(self, name: str) -> bool:
        graph_input = self.inputs.get(name)
        return graph_input is not None and graph_input.type.tensor_type.HasField(
            "shape") and len(graph_input.type.tensor_type.shape.dim) == 0

    def elem_type(self, name: str) -> int:
        graph_input = self.inputs.get(name)
        return graph_input.type.tensor_type.elem_type if graph_input else TensorProto.INT64


def attribute(node: NodeProto, name: str, default=None):
    """An attribute's value, or ``default``."""
    found = next((a for a in node.attribute if a.name == name), None)
    return default if found is None else helper.get_attribute_value(found)


def bypass_concat_split(tensors: Tensors) -> int:
    """``Squeeze(Split(Concat(Unsqueeze(x0), Unsqueeze(x1), ..))[i])`` on one axis is ``xi``.

    jina-v3's export stacks the rotated q, k and v into one tensor only to split it again:
    two copies of every activation for nothing. Returns the Splits bypassed.
    """
    index = Index(tensors)
    renames: dict[str, str] = {}
    count = 0
    for split in tensors.model.graph.node:
        concat = index.op(split.input[0], "Concat") if split.op_type == "Split" else None
        if concat is None:
            continue
        axis = attribute(split, "axis", 0)
        sizes = index.constant(split.input[1]) if len(split.input) > 1 else None
        stacked = [index.op(i, "Unsqueeze") for i in concat.input]
        if (attribute(concat, "axis") != axis or sizes is None or not np.all(sizes == 1)
                or len(sizes) != len(stacked) or any(u is None for u in stacked)
                or any(_axes(index, u) != [axis] for u in stacked)):
            continue
        squeezes = [index.consumers[o] for o in split.output]
        if any(len(users) != 1 or users[0].op_type != "Squeeze" or users[0].output[0] in
               index.outputs or _axes(index, users[0]) != [axis] for users in squeezes):
            continue
        for users, unsqueeze in zip(squeezes, stacked, strict=True):
            renames[users[0].output[0]] = unsqueeze.input[0]
        count += 1
    if count:
        _rename_uses(tensors, renames)
        prune(tensors)
    return count


def _axes(index: Index, node: NodeProto) -> list[int] | None:
    """A Squeeze's or Unsqueeze's axes (opset 13+: an input; before: an attribute)."""
    if len(node.input) > 1:
        value = index.constant(node.input[1])
        return None if value is None else [int(a) for a in value.reshape(-1)]
    axes = attribute(node, "axes")
    return None if axes is None else list(axes)


def _rename_uses(tensors: Tensors, renames: dict[str, str]) -> None:
    """Make every node (and graph output) that reads a key of ``renames`` read its value."""
    for node in tensors.model.graph.node:
        for i, name in enumerate(node.input):
            if name in renames:
                node.input[i] = renames[name]


def replace_nodes(tensors: Tensors, replaced: dict[int, list[NodeProto]],
                  domain: str | None = None) -> None:
    """Put each node ``n`` with ``id(n)`` in ``replaced`` by its list of nodes, in place (the
    list keeps the graph in topological order), import ``domain`` if given, and prune."""
    graph = tensors.model.graph
    nodes = [n for node in graph.node for n in replaced.get(id(node), [node])]
    del graph.node[:]
    graph.node.extend(nodes)
    if domain and not any(o.domain == domain for o in tensors.model.opset_import):
        tensors.model.opset_import.append(helper.make_opsetid(domain, 1))
    prune(tensors)


def keep_outputs(tensors: Tensors, names: list[str]) -> int:
    """Drop every graph output not in ``names``, and what only it needed."""
    outputs = tensors.model.graph.output
    dropped = [o for o in outputs if o.name not in names]
    for output in dropped:
        outputs.remove(output)
    if dropped:
        prune(tensors)
    return len(dropped)


def prune(tensors: Tensors) -> None:
    """Remove nodes whose outputs nothing uses, and initializers no node uses."""
    graph = tensors.model.graph
    needed = {o.name for o in graph.output}
    kept = []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(node.input)
            needed.update(_subgraph_inputs(node))
    del graph.node[:]
    graph.node.extend(reversed(kept))
    unused = [t for t in graph.initializer if t.name not in needed]
    for tensor in unused:
        graph.initializer.remove(tensor)
    tensors.forget(unused)


def _subgraph_inputs(node: NodeProto) -> set[str]:
    names: set[str] = set()
    for attr in node.attribute:
        for graph in [attr.g] if attr.HasField("g") else list(attr.graphs):
            for inner in graph.node:
                names.update(inner.input)
    return names
