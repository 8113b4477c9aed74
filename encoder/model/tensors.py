"""Initializer values of big ONNX models without loading them: read lazily, written streaming.

A jina-v3 export keeps 2.29 GB of weights in an external data file. ``onnx.load`` with its
data and ``onnx.save`` would hold all of it, several times over, in the memory of the replica
that prepares the model; here a graph pass reads a tensor only when it needs it (a memory map)
and the prepared copy is written one tensor at a time.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# Offsets of external tensors are multiples of this, so ONNX Runtime can map them.
_ALIGN = 64 * 1024
# Tensors at least this big go to the external data file; smaller ones stay in the graph.
_EXTERNAL_BYTES = 1024


class Tensors:
    """The initializers of one model: names to arrays, computed on demand.

    ``folder`` is where the model's external data files are. New initializers are added as
    functions that compute their array, called once when the copy is written.
    """

    def __init__(self, model: onnx.ModelProto, folder: Path) -> None:
        self.model = model
        self.folder = folder
        self._made: dict[str, Callable[[], np.ndarray]] = {}
        self._index: dict[str, TensorProto] = {}
        # The model's own initializers as loaded: new ones may derive from pruned ones.
        self._source = {t.name: _copy(t) for t in model.graph.initializer}

    @classmethod
    def load(cls, path: Path) -> Tensors:
        """The model at ``path``, its external data left on disk."""
        return cls(onnx.load(os.fspath(path), load_external_data=False), path.parent)

    def proto(self, name: str) -> TensorProto | None:
        """The initializer called ``name``, or None."""
        initializers = self.model.graph.initializer
        if len(self._index) != len(initializers) or (
                name in self._index and self._index[name].name != name):
            self._index = {t.name: t for t in initializers}
        return self._index.get(name)

    def array(self, name: str) -> np.ndarray:
        """An initializer's value (a read-only memory map for external data)."""
        if name in self._made:
            return self._made[name]()
        tensor = self._source[name] if name in self._source else self.proto(name)
        if tensor is None:
            raise KeyError(name)
        if tensor.data_location != TensorProto.EXTERNAL:
            return numpy_helper.to_array(tensor)
        where = {e.key: e.value for e in tensor.external_data}
        dtype = helper.tensor_dtype_to_np_dtype(tensor.data_type)
        return np.memmap(self.folder / where["location"], dtype=dtype, mode="r",
                         offset=int(where.get("offset", 0)), shape=tuple(tensor.dims))

    def shape(self, name: str) -> tuple[int, ...]:
        tensor = self.proto(name)
        if tensor is None:
            raise KeyError(name)
        return tuple(tensor.dims)

    def add(self, name: str, shape: tuple[int, ...], make: Callable[[], np.ndarray],
            dtype: int = TensorProto.FLOAT) -> str:
        """Declare a new initializer computed by ``make`` when the copy is written."""
        placeholder = TensorProto(name=name, data_type=dtype, dims=shape)
        self.model.graph.initializer.append(placeholder)
        self._made[name] = make
        return name

    def forget(self, removed: list[TensorProto]) -> None:
        """Initializers that were removed from the graph: drop what was kept for them."""
        self._index = {}
        for tensor in removed:
            self._made.pop(tensor.name, None)

    def save(self, path: Path) -> None:
        """Write the model to ``path`` and every big initializer to ``<path>_data``."""
        data_name = path.name + "_data"
        with (path.parent / data_name).open("wb") as data:
            for tensor in self.model.graph.initializer:
                value = np.asarray(self.array(tensor.name), order="C",
                                   dtype=helper.tensor_dtype_to_np_dtype(tensor.data_type))
                if tuple(value.shape) != tuple(tensor.dims):
                    raise ValueError(f"{tensor.name}: made {value.shape}, declared "
                                     f"{tuple(tensor.dims)}")
                del tensor.external_data[:]
                tensor.ClearField("data_location")
                if value.nbytes < _EXTERNAL_BYTES:
                    tensor.raw_data = value.tobytes()
                    continue
                offset = -(-data.tell() // _ALIGN) * _ALIGN
                data.seek(offset)
                data.write(memoryview(value).cast("B"))
                tensor.ClearField("raw_data")
                tensor.data_location = TensorProto.EXTERNAL
                for key, val in (("location", data_name), ("offset", str(offset)),
                                 ("length", str(value.nbytes))):
                    tensor.external_data.add(key=key, value=val)
        self._made.clear()
        onnx.save(self.model, os.fspath(path))


def _copy(tensor: TensorProto) -> TensorProto:
    copy = TensorProto()
    copy.CopyFrom(tensor)
    return copy
