"""``quantize: int8``: a dynamically quantized copy of the ONNX model, built once, cached.

The copy lives beside the source model, named by a hash of the source's bytes, so a changed
model is never served from a stale copy and every replica on a host reuses the first one's
work. Weights become int8 with one scale per output channel; activations are quantized per
run (dynamic quantization), so no calibration data is needed. Why this recipe and its
figures: docs/decisions/int8.md.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import shutil
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

_CHUNK = 16 * 1024 * 1024
# In the copy's name: a new recipe is a new copy, never a stale one.
RECIPE = "int8pc"
# CPU flags with int8 dot products that cannot saturate (VNNI, AMX).
_VNNI_FLAGS = {"avx512_vnni", "avx_vnni", "amx_int8"}


def quantized_model(source: Path) -> Path:
    """Path of the int8 copy of ``source``, building it first if it is not cached."""
    target = source.with_name(f"{source.stem}.{RECIPE}-{source_digest(source)[:16]}.onnx")
    if target.is_file():
        return target
    lock_path = target.with_name(target.name + ".lock")
    with lock_path.open("w") as lock:
        # Replicas starting together on one host: one builds, the others wait and reuse.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.is_file():
            _build(source, target)
    return target


def needs_saturation_guard(cpu_flags: set[str] | None = None) -> bool:
    """Whether int8 runs need ORT's U8S8 saturation guard on this CPU.

    Without VNNI, x86 int8 kernels (AVX2, AVX-512) add pairs of products in 16 bits, which
    can saturate; ``session.x64quantprecision`` switches them to exact, slower U8U8 kernels.
    With VNNI the guard only costs speed. ``cpu_flags`` defaults to /proc/cpuinfo's.
    """
    flags = _cpu_flags() if cpu_flags is None else cpu_flags
    return bool(flags) and not flags & _VNNI_FLAGS and bool(flags & {"avx2", "avx512f"})


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no x86 flags to go by
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.partition(":")[2].split())


def source_digest(source: Path) -> str:
    """SHA-256 over the ONNX file and its external data files."""
    digest = hashlib.sha256()
    for path in [source, *_external_data(source)]:
        digest.update(path.name.encode())
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def _external_data(source: Path) -> list[Path]:
    return [p for p in (source.with_name(source.name + "_data"),
                        source.with_name(source.name + ".data")) if p.is_file()]


def _build(source: Path, target: Path) -> None:
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logger.info("quantizing %s to int8 (once; cached as %s)", source, target.name)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        built = Path(scratch) / target.name
        quantize_dynamic(
            source, built, weight_type=QuantType.QInt8, per_channel=True,
            use_external_data_format=True,
            # jina's graph has tensors whose type ORT's shape inference leaves unknown.
            extra_options={"DefaultTensorType": TensorProto.FLOAT},
        )
        # External data first, the .onnx last: its presence marks a complete copy.
        for produced in sorted(Path(scratch).iterdir(), key=lambda p: p.suffix == ".onnx"):
            shutil.move(str(produced), target.parent / produced.name)
