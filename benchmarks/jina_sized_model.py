"""Jina-shaped ONNX encoders of real sizes with random weights, for honest benchmarks.

jina's inputs (``input_ids``, ``attention_mask``, scalar ``task_id``) and ``text_embeds``
output, fp32 weights in external ``onnx/model.onnx_data``, built with the ``onnx`` helper
API; config.json and tokenizer are jina-tiny's (tests/models.py). Sizes:

  jina-v3   XLM-R large: 24 layers, width 1024, 16 heads, FFN 4096 (~2.3 GB, the real
            model's compute)
  minilm    all-MiniLM-L6-v2's: 6 layers, width 384, 12 heads, FFN 1536 (the embedding
            table keeps jina's 250002 rows), where serving overhead shows

Vectors are meaningless; speed and memory are what they are for. LoRA adapters are left
out (rank 4: <0.1% of the FLOPs); the task picks a bias instead.

Usage: ``python -m benchmarks.jina_sized_model OUT_DIR [--size jina-v3|minilm]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from tests.cross_encoder_graph import encoder_body, encoder_constants
from tests.graph_builder import GraphBuilder
from tests.models import build_jina_tiny

VOCAB, POSITIONS, TASKS = 250002, 8194, 5
# (layers, width, heads, FFN width) of each size.
SIZES = {"jina-v3": (24, 1024, 16, 4096), "minilm": (6, 384, 12, 1536)}


def build_jina_sized(out: Path, size: str = "jina-v3", seed: int = 0) -> Path:
    """Write the model folder of ``size`` (a key of ``SIZES``) to ``out`` and return it."""
    layers, WIDTH, HEADS, FFN = SIZES[size]
    import onnx
    from onnx import TensorProto, helper

    build_jina_tiny(out)  # tokenizer, config and folder layout; graph replaced below
    g = GraphBuilder(np.random.default_rng(seed), draw32=True)
    node = g.node

    def weight(name: str, *shape: int, scale: float = 0.02, value: float | None = None) -> str:
        return g.weight(name, *shape, scale=scale, value=value)

    def layer_norm(x: str, prefix: str) -> str:
        return node("LayerNormalization", [x, weight(f"{prefix}.g", WIDTH, value=1.0),
                                           weight(f"{prefix}.b", WIDTH, value=0.0)],
                    f"{prefix}.out", axis=-1, epsilon=1e-5)

    def linear(x: str, prefix: str, fan_in: int, fan_out: int) -> str:
        y = node("MatMul", [x, weight(f"{prefix}.w", fan_in, fan_out)], f"{prefix}.mm")
        return node("Add", [y, weight(f"{prefix}.bias", fan_out, value=0.0)], f"{prefix}.out")

    # A BERT body with positions numbered from pad_token_id + 1 and, where BERT adds token
    # types, a per-task bias picked by the scalar task_id.
    encoder_constants(g, WIDTH, HEADS, 2)
    tables = (weight("E", VOCAB, WIDTH), weight("P", POSITIONS, WIDTH),
              weight("T", TASKS, WIDTH))
    x = encoder_body(g, tables, WIDTH, layers, FFN, linear, layer_norm, types_input="task_id")
    g.nodes.append(helper.make_node("Identity", [x], ["text_embeds"]))
    model = g.model("jina_sized", [helper.make_tensor_value_info(
        "text_embeds", TensorProto.FLOAT, ["batch", "seq", WIDTH])])
    for stale in ("model.onnx", "model.onnx_data"):
        (out / "onnx" / stale).unlink(missing_ok=True)
    onnx.save_model(model, str(out / "onnx/model.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="model.onnx_data",
                    size_threshold=1024)
    config = json.loads((out / "config.json").read_text())
    dims = [d for d in (32, 64, 128, 256, 512, 768, 1024) if d <= WIDTH]
    config.update(hidden_size=WIDTH, num_hidden_layers=layers, num_attention_heads=HEADS,
                  intermediate_size=FFN, matryoshka_dimensions=dims)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", choices=sorted(SIZES), default="jina-v3")
    args = parser.parse_args()
    print(build_jina_sized(args.out, args.size))


if __name__ == "__main__":
    main()
