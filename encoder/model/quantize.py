"""``quantize: int8``: a dynamically quantized copy of the ONNX model, built once, cached.

The copy is cached as the prepared one is (``prepare.cached_copy``): beside the source, named
by a hash of its bytes. The weights of matrix products become int8 with one scale per output
channel; activations are quantized per run (dynamic quantization). Lookups (the embedding
table, the LoRA adapters' stacks) stay fp32: quantizing them saves no time, costs fidelity,
and an adapter's few values per task would share one scale. A product whose input has a
few values far wider than the rest stays fp32 too: one scale per run would leave its
typical values only a few levels. Which those are is measured once, on calibration runs of
random token ids, not named. Why this recipe and its figures: docs/decisions/int8.md.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from encoder.model.card import ModelCard
from encoder.model.prepare import cached_copy

logger = logging.getLogger(__name__)

# In the copy's name: a new recipe is a new copy, never a stale one.
RECIPE = "int8w"
# By weight bits: a product stays fp32 when, in a calibration run, its input spans more
# than this many times its root mean square. At 64 the run's 255 steps leave a typical value
# < 4 steps; 7-bit weights add error of their own, so their copy keeps more products fp32.
# Both are the widest that meet the fidelity bar with margin on real MiniLM (int8.md).
WIDE_INPUT = {8: 64.0, 7: 40.0}
_CALIBRATION_SHAPE = (16, 24)  # sequences x tokens per calibration run
# CPU flags with int8 dot products that cannot saturate (VNNI, AMX).
_VNNI_FLAGS = {"avx512_vnni", "avx_vnni", "amx_int8"}


def quantized_model(source: Path, card: ModelCard, cpu_flags: set[str] | None = None) -> Path:
    """Path of the int8 copy of ``source`` for a CPU with ``cpu_flags`` (None: this one's),
    building it first if it is not cached: 7-bit weights where 8-bit ones could saturate
    (``int8_can_saturate``)."""
    seven_bit = int8_can_saturate(cpu_flags)
    return cached_copy(source, RECIPE + "7" * seven_bit,
                       lambda target: _build(source, card, target, seven_bit))


def int8_can_saturate(cpu_flags: set[str] | None = None) -> bool:
    """Whether this CPU's int8 kernels can saturate on 8-bit weights.

    Without VNNI, x86 int8 kernels (AVX2, AVX-512) add pairs of uint8 x int8 products in 16
    bits: 2 x 255 x 127 overflows them. With 7-bit weights (ORT's ``reduce_range``: -64..64)
    a pair stays within 2 x 255 x 64 < 2^15, so the fast kernels are exact. ``cpu_flags``
    defaults to /proc/cpuinfo's.
    """
    flags = cpu_flags_of_host() if cpu_flags is None else cpu_flags
    return bool(flags) and not flags & _VNNI_FLAGS and bool(flags & {"avx2", "avx512f"})


def cpu_flags_of_host() -> set[str]:
    """This CPU's feature flags (/proc/cpuinfo); empty where unknown."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no x86 flags to go by
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.partition(":")[2].split())


def _build(source: Path, card: ModelCard, target: Path, seven_bit: bool) -> None:
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logger.info("quantizing %s to int8 with %d-bit weights (once; cached as %s)", source,
                7 if seven_bit else 8, target.name)
    limit = WIDE_INPUT[7 if seven_bit else 8]
    wide = wide_input_products(source, card, limit)
    if wide:
        logger.info("kept in fp32 (inputs wider than %g x their RMS): %s", limit,
                    ", ".join(wide))
    quantize_dynamic(
        source, target, weight_type=QuantType.QInt8, per_channel=True, reduce_range=seven_bit,
        use_external_data_format=True, op_types_to_quantize=["MatMul"], nodes_to_exclude=wide,
        # jina's graph has tensors whose type ORT's shape inference leaves unknown.
        extra_options={"DefaultTensorType": TensorProto.FLOAT},
    )


def input_spans(source: Path, card: ModelCard) -> dict[str, float]:
    """Per matrix product with a weight (what int8 quantizes), by node name: the widest
    (range / root mean square) of its input over calibration runs of random token ids, one
    per task (at least four). Empty when the config gives no vocabulary size."""
    import onnx
    import onnxruntime as ort

    if not card.vocab_size:
        return {}
    model = onnx.load(os.fspath(source), load_external_data=False)
    weights = {tensor.name for tensor in model.graph.initializer}
    products = {node.name: node.input[0] for node in model.graph.node
                if node.op_type == "MatMul" and node.input[1] in weights}
    if not products:
        return {}
    outputs = {output.name for output in model.graph.output}
    model.graph.output.extend(onnx.ValueInfoProto(name=x) for x in set(products.values())
                              if x not in outputs)
    options = ort.SessionOptions()
    # Loaded from bytes: the external weights are read from the source's folder.
    options.add_session_config_entry("session.model_external_initializers_file_folder_path",
                                     os.fspath(source.parent))
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    names = sorted(set(products.values()))
    inputs = {i.name: i for i in session.get_inputs()}
    rng = np.random.default_rng(0)
    spans = dict.fromkeys(names, 0.0)
    for run in range(max(4, len(card.tasks))):
        ids = rng.integers(min(1000, card.vocab_size // 2), card.vocab_size, _CALIBRATION_SHAPE)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        if "token_type_ids" in inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        if "task_id" in inputs:
            task = np.array(run % max(1, len(card.tasks)))
            feed["task_id"] = task if not inputs["task_id"].shape else np.full(len(ids), task)
        for name, x in zip(names, session.run(names, feed), strict=True):
            x = x.astype(np.float64)
            spread = max(x.max(), 0) - min(x.min(), 0)  # the range the quantizer scales
            spans[name] = max(spans[name], spread / max(np.sqrt((x * x).mean()), 1e-12))
    return {node: spans[x] for node, x in products.items()}


def wide_input_products(source: Path, card: ModelCard, limit: float) -> list[str]:
    """Matrix products whose input spans more than ``limit`` x its root mean square."""
    return sorted(node for node, span in input_spans(source, card).items() if span > limit)
