"""``quantize: int8``: a dynamically quantized copy of the ONNX model, built once, cached.

The copy is cached as the prepared one is (``prepare.cached_copy``): beside the source, named
by a hash of its bytes. The weights of matrix products become int8 with one scale per output
channel; activations are quantized per run (dynamic quantization), so no calibration data is
needed. Lookups (the embedding table, the LoRA adapters' stacks) stay fp32: quantizing them
saves no time, costs fidelity, and an adapter's few values per task would share one scale.
Why this recipe and its figures: docs/decisions/int8.md.
"""

from __future__ import annotations

import logging
from pathlib import Path

from encoder.model.prepare import cached_copy

logger = logging.getLogger(__name__)

# In the copy's name: a new recipe is a new copy, never a stale one.
RECIPE = "int8mm"
# CPU flags with int8 dot products that cannot saturate (VNNI, AMX).
_VNNI_FLAGS = {"avx512_vnni", "avx_vnni", "amx_int8"}


def quantized_model(source: Path) -> Path:
    """Path of the int8 copy of ``source``, building it first if it is not cached."""
    return cached_copy(source, RECIPE, lambda target: _build(source, target))


def needs_saturation_guard(cpu_flags: set[str] | None = None) -> bool:
    """Whether int8 runs need ORT's U8S8 saturation guard on this CPU.

    Without VNNI, x86 int8 kernels (AVX2, AVX-512) add pairs of products in 16 bits, which
    can saturate; ``session.x64quantprecision`` switches them to exact, slower U8U8 kernels.
    With VNNI the guard only costs speed. ``cpu_flags`` defaults to /proc/cpuinfo's.
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


def _build(source: Path, target: Path) -> None:
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logger.info("quantizing %s to int8 (once; cached as %s)", source, target.name)
    quantize_dynamic(
        source, target, weight_type=QuantType.QInt8, per_channel=True,
        use_external_data_format=True, op_types_to_quantize=["MatMul"],
        # jina's graph has tensors whose type ORT's shape inference leaves unknown.
        extra_options={"DefaultTensorType": TensorProto.FLOAT},
    )
