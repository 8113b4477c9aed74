"""jina-tiny's ONNX graph: jina-v3's published export in miniature, for the test suite.

The same operators in the same arrangement as the real export (``../shared/models/``), at
width 64 with one layer, so the graph passes that prepare the real model (LoRA on
activations, fused rotary and attention) are exercised by every test that serves jina-tiny:

- every LoRA'd weight is merged on every run: ``W + 0.25 · L[task] @ R[task]`` for the word
  embeddings (then gathered by id), the token-type row, the attention's qkv and output
  projections (``Transpose`` then ``MatMul``) and the pooler (a ``Gemm``);
- q and k are rotated by rotate-half RoPE from cos / sin caches of 8194 rows;
- q, k and v are stacked and split again, attention is ``Einsum`` + a ``Where`` padding mask
  + ``Softmax`` + ``Einsum``.

Positions also come from a learned table numbered from pad_token_id + 1, so 8193 tokens
overflow it and crash the graph: a graph failing past its limit, as the real one does one
token past its 8194 (its rotary caches' rows). Random weights.
"""

from __future__ import annotations

import numpy as np
from onnx import ModelProto, TensorProto, helper, numpy_helper

from tests.graph_builder import GraphBuilder

VOCAB, POSITIONS, TASKS, RANK, HEADS = 250002, 8194, 5, 4, 4


def jina_tiny_graph(width: int, pad_id: int, rng: np.random.Generator) -> ModelProto:
    """The graph, opset 18, weights inline (the caller saves them as external data)."""
    g = GraphBuilder(rng)
    head = width // HEADS
    node, const = g.node, g.const

    def weight(name: str, *shape: int, scale: float = 0.5) -> str:
        return g.weight(name, *shape, scale=scale)

    def merged(name: str, rows: int, cols: int) -> str:
        """``name + 0.25 · L[task] @ R[task]``, as the export computes it on every run."""
        base = weight(name, rows, cols, scale=1.0 / np.sqrt(cols) if rows < VOCAB else 0.5)
        left = node("Gather", [weight(f"{name}.lora_L", TASKS, rows, RANK), "task_id"],
                    f"{name}/L", axis=0)
        right = node("Gather", [weight(f"{name}.lora_R", TASKS, RANK, cols), "task_id"],
                     f"{name}/R", axis=0)
        product = node("Reshape", [node("MatMul", [left, right], f"{name}/LR"),
                                   const(f"{name}.shape", [rows, cols])], f"{name}/LRr")
        return node("Add", [base, node("Mul", [product, "quarter"], f"{name}/delta")],
                    f"{name}/merged")

    def linear(x: str, name: str, fan_in: int, fan_out: int) -> str:
        w_t = node("Transpose", [merged(name, fan_out, fan_in)], f"{name}/T", perm=[1, 0])
        return node("Add", [weight(f"{name}.bias", fan_out, scale=0.1),
                            node("MatMul", [x, w_t], f"{name}/mm")], f"{name}/out")

    def rotate(x: str, name: str) -> str:
        """rotate-half RoPE on ``[b, t, heads, head]``, sliced and rejoined as exported."""
        end = head // 2
        x_rot = node("Slice", [x, "zero1", const(f"{name}.hd", [head]), "ax3"], f"{name}/rot")
        x_pass = node("Slice", [x, const(f"{name}.hd2", [head]), "big", "ax3"], f"{name}/pass")
        x1 = node("Slice", [x_rot, "zero1", const(f"{name}.h", [end]), "axm1"], f"{name}/x1")
        x2 = node("Slice", [x_rot, const(f"{name}.h2", [end]), const(f"{name}.e", [head]),
                            "axm1"], f"{name}/x2")
        half = node("Concat", [node("Neg", [x2], f"{name}/neg"), x1], f"{name}/half", axis=-1)
        out = node("Add", [node("Mul", [x_rot, "cos_full"], f"{name}/xc"),
                           node("Mul", [half, "sin_full"], f"{name}/hs")], f"{name}/sum")
        return node("Concat", [out, x_pass], f"{name}/rotated", axis=-1)

    inv_freq = 1.0 / 10000 ** (np.arange(0, head, 2) / head)
    angles = np.outer(np.arange(POSITIONS), inv_freq)
    for name, value in (("cos_cache", np.cos(angles)), ("sin_cache", np.sin(angles)),
                        ("quarter", 0.25), ("scale", 1 / np.sqrt(head)), ("zerof", 0.0)):
        g.array(name, np.asarray(value, dtype=np.float32))
    for name, value in (("one", 1), ("start", pad_id + 1), ("zero1", [0]), ("ax0", [0]),
                        ("ax1", [1]), ("ax2", [2]), ("ax3", [3]), ("axm1", [-1]),
                        ("big", [2**62]), ("expand2", [1, 2, 1]), ("ones3", [1, 1, 1]),
                        ("qkv_shape", [0, 0, 3, HEADS, head]), ("flat", [0, 0, width]),
                        ("mask_shape", [0, 1, 1, -1]), ("idx0", 0), ("idx1", 1), ("idx2", 2)):
        const(name, value)

    # Embeddings: LoRA-merged word table and token-type row, learned positions.
    shape = node("Shape", ["input_ids"], "shape")
    seq = node("Gather", [shape, "one"], "seq", axis=0)
    tok = node("Gather", [merged("word", VOCAB, width), "input_ids"], "tok", axis=0)
    zeros = node("ConstantOfShape", [shape], "type_ids",
                 value=numpy_helper.from_array(np.zeros(1, np.int64)))
    types = node("Gather", [merged("token_type", 1, width), zeros], "types", axis=0)
    positions = node("Range", ["start", node("Add", [seq, "start"], "limit"), "one"], "pos")
    x = node("Add", [node("Add", [tok, types], "tok_types"),
                     node("Gather", [weight("P", POSITIONS, width), positions], "pos_emb",
                          axis=0)], "x")
    # Rotary caches: rows 0..seq-1, each half repeated to the head's width.
    seq1 = node("Unsqueeze", [seq, "ax0"], "seq1")
    for kind in ("cos", "sin"):
        rows = node("Slice", [f"{kind}_cache", "zero1", seq1, "ax0"], f"{kind}_rows")
        wide = node("Expand", [node("Unsqueeze", [rows, "ax1"], f"{kind}_u"), "expand2"],
                    f"{kind}_e")
        node("Reshape", [wide, const(f"{kind}.full", [-1, 1, head])], f"{kind}_full")
    # Attention: qkv, RoPE on q and k, stacked and split again, Einsum + mask + Softmax.
    qkv = node("Reshape", [linear(x, "qkv", width, 3 * width), "qkv_shape"], "qkv5")
    q, k, v = (node("Gather", [qkv, f"idx{i}"], f"{n}_heads", axis=2)
               for i, n in enumerate("qkv"))
    stacked = node("Concat", [node("Unsqueeze", [t, "ax2"], f"{t}_u")
                              for t in (rotate(q, "q"), rotate(k, "k"), v)], "stacked", axis=2)
    g.nodes.append(helper.make_node("Split", [stacked, "ones3"], ["qs", "ks", "vs"],
                                    name="/split", axis=2))
    q, k, v = (node("Squeeze", [t, "ax2"], f"{t}_sq") for t in ("qs", "ks", "vs"))
    scores = node("Einsum", [q, node("Mul", [k, "scale"], "k_scaled")], "scores",
                  equation="bthd,bshd->bhts")
    fill = node("ConstantOfShape", [node("Shape", ["attention_mask"], "mask_dims")], "fill",
                value=numpy_helper.from_array(np.array([-10000.0], np.float32)))
    keep = node("Cast", ["attention_mask"], "keep", to=TensorProto.BOOL)
    bias = node("Reshape", [node("Where", [keep, "zerof", fill], "mask_add"), "mask_shape"],
                "mask_bias")
    probs = node("Softmax", [node("Add", [scores, bias], "masked")], "probs", axis=-1)
    context = node("Reshape", [node("Einsum", [probs, v], "context",
                                    equation="bhts,bshd->bthd"), "flat"], "context3")
    hidden = node("Add", [x, linear(context, "out", width, width)], "residual")
    g.nodes.append(helper.make_node("Tanh", [hidden], ["text_embeds"], name="/text_embeds"))
    # A pooler output nobody should read: first token, LoRA'd Gemm, tanh.
    first = node("Gather", ["text_embeds", "idx0"], "first", axis=1)
    pooled = node("Gemm", [first, merged("pooler", width, width),
                           weight("pooler.bias", width, scale=0.1)], "pooled", transB=1)
    g.nodes.append(helper.make_node("Tanh", [pooled], ["pooler_output"], name="/pooler"))
    return g.model("jina_tiny", [
        helper.make_tensor_value_info("text_embeds", TensorProto.FLOAT, ["batch", "seq", width]),
        helper.make_tensor_value_info("pooler_output", TensorProto.FLOAT, ["batch", width])])
