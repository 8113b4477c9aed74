"""Building ONNX graphs of jina-v3's shape with random weights: initializers and nodes of a
graph under construction, and the model around them (jina's inputs, opset 18)."""

from __future__ import annotations

import numpy as np
from onnx import ModelProto, TensorProto, helper, numpy_helper


class GraphBuilder:
    """Initializers and nodes as a graph is written; names returned for chaining.

    rng: where random weights come from. ``draw32``: draw them as float32 (the benchmark
    models) or as float64 cast to float32 (jina-tiny's: its vectors stay what they were).
    """

    def __init__(self, rng: np.random.Generator, draw32: bool = False) -> None:
        self.rng = rng
        self.draw32 = draw32
        self.inits: list[TensorProto] = []
        self.nodes: list = []

    def weight(self, name: str, *shape: int, scale: float, value: float | None = None) -> str:
        """A float32 initializer: ``value`` everywhere, or normal draws times ``scale``."""
        if value is not None:
            data = np.full(shape, value, dtype=np.float32)
        elif self.draw32:
            data = self.rng.standard_normal(shape, dtype=np.float32) * np.float32(scale)
        else:
            data = (self.rng.standard_normal(shape) * scale).astype(np.float32)
        return self.array(name, data)

    def const(self, name: str, value, dtype=np.int64) -> str:
        """An initializer of ``value`` (int64 unless told)."""
        return self.array(name, np.array(value, dtype=dtype))

    def array(self, name: str, data: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(data, name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs) -> str:
        """A node named as exporters name them (``/<output>/<op>``), so tools that pick
        nodes by name (quantizers) work."""
        self.nodes.append(helper.make_node(op, inputs, [output], name=f"/{output}/{op}",
                                           **attrs))
        return output

    def model(self, name: str, outputs: list,
              inputs: tuple[str, ...] = ("input_ids", "attention_mask", "task_id")
              ) -> ModelProto:
        """The model: ``inputs`` of jina-v3's (``input_ids``, ``attention_mask`` and
        ``token_type_ids`` ``[batch, seq]``, scalar ``task_id``), ``outputs`` (value
        infos), opset 18."""
        shapes = {"task_id": []}
        graph = helper.make_graph(
            self.nodes, name,
            [helper.make_tensor_value_info(i, TensorProto.INT64, shapes.get(i, ["batch", "seq"]))
             for i in inputs], outputs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
        model.ir_version = 8
        return model
