"""The prepared copy of an export: graph passes applied once when the model loads, cached.

jina-v3's published export merges its LoRA adapters into full weight matrices on every run,
writes attention out in primitive ops and computes a pooler output nobody reads; the passes
(``lora.py``, ``rotary.py``, ``attention.py``, ``graph.py`` here) rewrite each pattern they find
into an equivalent, cheaper form. A graph with none of them (plain BERT exports) is served as
it is. The copy is built once per host and reused; how it is cached is ``cached_copy``'s.
Why, and what each pass saves: docs/decisions/real-graph.md.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from encoder.model.attention import fuse_attention
from encoder.model.graph import bypass_concat_split, keep_outputs
from encoder.model.lora import lora_to_activations
from encoder.model.rotary import fuse_rotary
from encoder.model.tensors import Tensors

logger = logging.getLogger(__name__)

# In the copy's name: changed passes make a new copy, never reuse a stale one.
RECIPE = "prep2"
# Token-state outputs, best first. Jina's second output is a pooler, never an embedding.
STATE_OUTPUTS = ("text_embeds", "last_hidden_state", "token_embeddings")
_CHUNK = 16 * 1024 * 1024
# Where copies go when the model's own folder is read-only (a mounted volume, a shared cache).
_FALLBACK_CACHE = Path("~/.cache/jina-embeddings-serve/prepared")


def served_output(outputs: list[tuple[str, int]]) -> str | None:
    """Which of a graph's ``(name, rank)`` outputs the service reads: the token states, or
    a cross-encoder's scores (``logits``, ``[batch, labels]``) where there are none."""
    names = [name for name, _ in outputs]
    return next((n for n in STATE_OUTPUTS if n in names),
                next((name for name, rank in outputs if rank == 3),
                     next((name for name, rank in outputs if rank == 2), None)))


def prepared_model(source: Path, heads: int | None) -> Path:
    """The prepared copy of ``source`` (built first if it is not cached), or ``source``
    itself when no pass applies. ``heads``: attention heads (config.json), or None."""
    started = time.perf_counter()
    tensors = Tensors.load(source)
    counts = _prepare(tensors, heads)
    if not counts:
        return source

    def build(target: Path) -> None:
        tensors.save(target)
        logger.info("prepared %s in %.1f s (once; cached as %s): %s", source,
                    time.perf_counter() - started, target.name,
                    ", ".join(f"{name} {n}" for name, n in counts.items()))

    return cached_copy(source, RECIPE, build)


def _prepare(tensors: Tensors, heads: int | None) -> dict[str, int]:
    """Run every pass; what each changed (empty when nothing)."""
    outputs = [(o.name, len(o.type.tensor_type.shape.dim)) for o in tensors.model.graph.output]
    counts = {"unused outputs": keep_outputs(tensors, [served_output(outputs) or ""]),
              "LoRA merges": lora_to_activations(tensors)}
    if heads:  # the fused ops need the head count, which only config.json gives
        counts["rotary embeddings"] = fuse_rotary(tensors, heads)
        counts["stack-and-split"] = bypass_concat_split(tensors)
        counts["attention blocks"] = fuse_attention(tensors, heads)
    return {name: n for name, n in counts.items() if n}


def cached_copy(source: Path, recipe: str, build: Callable[[Path], None]) -> Path:
    """A derived copy of ``source`` named by ``recipe`` and a digest of its bytes, built by
    ``build(target)`` once and reused.

    The copy goes beside the source (else under ``~/.cache/jina-embeddings-serve/prepared``),
    so a changed model is never served from a stale copy and every replica on a host reuses
    the first one's work: one builds under a lock, the others wait and reuse it. The ``.onnx``
    file is moved into place last, so its presence marks a complete copy.
    """
    folder = source.parent if os.access(source.parent, os.W_OK) else (
        _FALLBACK_CACHE.expanduser())
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{source.stem}.{recipe}-{source_digest(source)[:16]}.onnx"
    if target.is_file():
        return target
    with target.with_name(target.name + ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.is_file():
            with tempfile.TemporaryDirectory(dir=folder) as scratch:
                build(Path(scratch) / target.name)
                for produced in sorted(Path(scratch).iterdir(),
                                       key=lambda p: p.suffix == ".onnx"):
                    shutil.move(str(produced), folder / produced.name)
    return target


def source_digest(source: Path) -> str:
    """SHA-256 over the ONNX file and its external data files."""
    digest = hashlib.sha256()
    for path in [source, *external_data(source)]:
        digest.update(path.name.encode())
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def external_data(source: Path) -> list[Path]:
    """The external data files exporters write beside an ONNX file."""
    return [p for p in (source.with_name(source.name + "_data"),
                        source.with_name(source.name + ".data")) if p.is_file()]
