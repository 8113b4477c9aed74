"""Cross-encoder ONNX graphs for the rerank tests: one logit per (query, document) pair.

Two shapes, as their exports are: jina-reranker-v2-base-multilingual's (XLM-R: ``input_ids``
and ``attention_mask``, learned positions numbered from pad_token_id + 1, the first token's
state through a dense + tanh + out-projection head to ``logits`` ``[batch, 1]``) and the
ms-marco-MiniLM cross-encoders' (BERT: ``token_type_ids`` too, positions from 0). Random
weights; one layer of attention at a small width, so a test sees padding, token types and
positions change the score. Their BERT body (``encoder_body``) also carries all-MiniLM-L6-v2's
real weights (``tests/minilm_graph.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from onnx import ModelProto, TensorProto, helper

from tests.graph_builder import GraphBuilder


def cross_encoder_graph(width: int, heads: int, vocab: int, positions: int,
                        position_start: int, token_types: bool, rng: np.random.Generator,
                        layers: int = 1, ffn: int | None = None) -> ModelProto:
    """The graph, opset 18, weights inline. ``position_start``: the first position's row
    (XLM-R: pad_token_id + 1; BERT: 0); ``token_types``: BERT's third input."""
    g = GraphBuilder(rng, draw32=True)
    node = g.node
    ffn = ffn or 4 * width

    def weight(name: str, *shape: int, value: float | None = None) -> str:
        return g.weight(name, *shape, scale=0.5 if value is None else 0.0, value=value)

    def layer_norm(x: str, prefix: str) -> str:
        return node("LayerNormalization", [x, weight(f"{prefix}.g", width, value=1.0),
                                           weight(f"{prefix}.b", width, value=0.0)],
                    f"{prefix}.out", axis=-1, epsilon=1e-5)

    def linear(x: str, prefix: str, fan_in: int, fan_out: int) -> str:
        w = g.weight(f"{prefix}.w", fan_in, fan_out, scale=1 / np.sqrt(fan_in))
        return node("Add", [node("MatMul", [x, w], f"{prefix}.mm"),
                            g.weight(f"{prefix}.bias", fan_out, scale=0.1)], f"{prefix}.out")

    encoder_constants(g, width, heads, position_start)
    g.const("idx0", 0)
    tables = (weight("E", vocab, width), weight("P", positions, width),
              weight("T", 2, width) if token_types else None)
    x = encoder_body(g, tables, width, layers, ffn, linear, layer_norm)
    first = node("Gather", [x, "idx0"], "first", axis=1)
    dense = node("Tanh", [linear(first, "head.dense", width, width)], "head.tanh")
    g.nodes.append(helper.make_node("Identity", [linear(dense, "head.out", width, 1)],
                                    ["logits"], name="/logits"))
    inputs = ("input_ids", "attention_mask", *(("token_type_ids",) if token_types else ()))
    return g.model("cross_encoder", [helper.make_tensor_value_info(
        "logits", TensorProto.FLOAT, ["batch", 1])], inputs)


def encoder_constants(g: GraphBuilder, width: int, heads: int, position_start: int) -> None:
    """The shapes and scalars ``encoder_body`` refers to by name."""
    for name, value in (("one", 1), ("start", position_start), ("axes12", [1, 2]),
                        ("heads_shape", [0, 0, heads, width // heads]),
                        ("merge_shape", [0, 0, width])):
        g.const(name, value)
    for name, value in (("scale", 1 / np.sqrt(width // heads)), ("neg", -1e4), ("onef", 1.0),
                        ("half", 0.5), ("rsqrt2", np.sqrt(0.5))):
        g.array(name, np.array(value, dtype=np.float32))


def encoder_body(g: GraphBuilder, tables: tuple[str, str, str | None], width: int,
                 layers: int, ffn: int, linear: Callable[[str, str, int, int], str],
                 layer_norm: Callable[[str, str], str],
                 types_input: str = "token_type_ids") -> str:
    """A post-norm BERT encoder's token states ``[batch, seq, width]`` (the name).

    ``tables``: word, position and token-type (None: no ``types_input``) embeddings;
    ``linear(x, prefix, fan_in, fan_out)`` and ``layer_norm(x, prefix)`` add those ops with
    their weights, named by ``prefix`` (``emb_ln``; ``l<i>.q`` ... ``l<i>.ln2``, ``_layer``'s).
    """
    node = g.node
    word, position, types = tables
    seq = node("Gather", [node("Shape", ["input_ids"], "shape"), "one"], "seq")
    pos = node("Range", ["start", node("Add", [seq, "start"], "limit"), "one"], "pos")
    x = node("Add", [node("Gather", [word, "input_ids"], "tok"),
                     node("Gather", [position, pos], "pos_emb")], "x0")
    if types is not None:
        x = node("Add", [x, node("Gather", [types, types_input], "types")], "x1")
    x = layer_norm(x, "emb_ln")
    inverted = node("Sub", ["onef", node("Cast", ["attention_mask"], "maskf",
                                         to=TensorProto.FLOAT)], "inv_mask")
    bias = node("Unsqueeze", [node("Mul", [inverted, "neg"], "mask_neg"), "axes12"], "bias")
    for i in range(layers):
        x = _layer(g, x, bias, f"l{i}", width, ffn, linear, layer_norm)
    return x


def _layer(g: GraphBuilder, x: str, bias: str, p: str, width: int, ffn: int, linear,
           layer_norm) -> str:
    """One post-norm transformer layer: masked attention, then a GELU feed-forward."""
    node = g.node

    def heads(t: str, name: str, perm: list[int]) -> str:
        return node("Transpose", [node("Reshape", [t, "heads_shape"], f"{name}.r")],
                    f"{name}.t", perm=perm)

    q = heads(linear(x, f"{p}.q", width, width), f"{p}.qh", [0, 2, 1, 3])
    k = heads(linear(x, f"{p}.k", width, width), f"{p}.kh", [0, 2, 3, 1])
    v = heads(linear(x, f"{p}.v", width, width), f"{p}.vh", [0, 2, 1, 3])
    scores = node("Mul", [node("MatMul", [q, k], f"{p}.qk"), "scale"], f"{p}.scaled")
    probs = node("Softmax", [node("Add", [scores, bias], f"{p}.masked")], f"{p}.probs", axis=-1)
    ctx = node("Transpose", [node("MatMul", [probs, v], f"{p}.ctx")], f"{p}.ctxt",
               perm=[0, 2, 1, 3])
    ctx = node("Reshape", [ctx, "merge_shape"], f"{p}.merged")
    x = layer_norm(node("Add", [x, linear(ctx, f"{p}.o", width, width)], f"{p}.res1"),
                   f"{p}.ln1")
    h = linear(x, f"{p}.up", width, ffn)
    erf = node("Erf", [node("Mul", [h, "rsqrt2"], f"{p}.hs")], f"{p}.erf")
    gelu = node("Mul", [node("Mul", [h, "half"], f"{p}.hh"),
                        node("Add", [erf, "onef"], f"{p}.erf1")], f"{p}.gelu")
    return layer_norm(node("Add", [x, linear(gelu, f"{p}.down", ffn, width)], f"{p}.res2"),
                      f"{p}.ln2")
