import shutil

import numpy as np
import pytest

from encoder.ingress.tokenize import TextTokenizer
from encoder.model.card import ModelCard
from encoder.model.prepare import source_digest
from encoder.model.quantize import (
    WIDE_INPUT,
    input_spans,
    needs_saturation_guard,
    quantized_model,
    wide_input_products,
)
from encoder.model.runtime import OnnxModel, pad, served_onnx
from encoder.parcels import Parcel
from encoder.pooling import l2_normalize
from encoder.scheduling.scheduler import Scheduler
from encoder.settings import SchedulerSettings
from tests.corpus import SENTENCES
from tests.reference import cosine

TEXTS = ["Hello world", "你好，世界", "a longer passage about quantization " * 6]


@pytest.fixture(scope="module")
def model_copy(jina_dir, tmp_path_factory):
    """The int8 copy is written beside the model: work on a private copy."""
    return shutil.copytree(jina_dir, tmp_path_factory.mktemp("q") / "jina")


def _vectors(onnx_path, folder, ids, task_id=4, guard=False):
    """Normalised vectors of ``ids`` as a replica's scheduler runs them (length-sorted runs)."""
    scheduler = Scheduler(OnnxModel(onnx_path, threads=1, saturation_guard=guard),
                          ModelCard.from_folder(folder), SchedulerSettings(parallel_runs=1))
    return l2_normalize(scheduler.run_window([Parcel.from_lists(task_id, ids)])[0])


def test_int8_copy_is_built_once_and_close_to_fp32(model_copy, jina_reference):
    source = model_copy / "onnx/model.onnx"
    first = quantized_model(source, ModelCard.from_folder(model_copy))
    assert first.parent == source.parent and first.name.startswith("model.int8w-")
    built_at = first.stat().st_mtime_ns
    assert quantized_model(source, ModelCard.from_folder(model_copy)) == first
    assert first.stat().st_mtime_ns == built_at  # reused, not rebuilt
    ids = [jina_reference.ids(t) for t in TEXTS]
    fp32 = _vectors(source, model_copy, ids)
    int8 = _vectors(first, model_copy, ids)
    for a, b in zip(fp32, int8, strict=True):
        assert cosine(a, b) >= 0.99


def test_changed_weights_change_the_cache_key(model_copy):
    source = model_copy / "onnx/model.onnx"
    before = source_digest(source)
    data = model_copy / "onnx/model.onnx_data"
    raw = bytearray(data.read_bytes()[:16])
    with data.open("r+b") as f:
        f.write(bytes(b ^ 0xFF for b in raw))
    assert source_digest(source) != before


@pytest.mark.parametrize(("flags", "guard"), [
    ({"avx2", "fma"}, True),                         # AVX2 without VNNI: saturates
    ({"avx2", "avx512f", "avx512bw"}, True),         # AVX-512 without VNNI
    ({"avx2", "avx512f", "avx512_vnni"}, False),     # Zen 4, Ice Lake and later
    ({"avx2", "avx_vnni"}, False),                   # Alder Lake
    ({"asimd"}, False),                              # ARM: no x86 kernels
    (set(), False),                                  # flags unknown
])
def test_saturation_guard_only_without_vnni(flags, guard):
    assert needs_saturation_guard(flags) is guard


def test_the_guard_opens_a_session_with_exact_kernels(model_copy, jina_reference):
    int8 = quantized_model(model_copy / "onnx/model.onnx", ModelCard.from_folder(model_copy))
    ids = [jina_reference.ids(t) for t in TEXTS]
    plain = _vectors(int8, model_copy, ids)
    guarded = _vectors(int8, model_copy, ids, guard=True)
    for a, b in zip(plain, guarded, strict=True):
        assert cosine(a, b) >= 0.99


def test_a_reranker_serves_int8_too(reranker_dir, reranker_reference, tmp_path):
    """``quantize: int8`` on a cross-encoder: its int8 copy scores pairs close to fp32's."""
    folder = shutil.copytree(reranker_dir, tmp_path / "reranker")
    card = ModelCard.from_folder(folder)
    int8 = OnnxModel(quantized_model(folder / "onnx/model.onnx", card), threads=1)
    for document in ("Berlin is the capital of Germany.", "Cats sleep a lot."):
        ((ids, types),) = reranker_reference.pairs("capital of Germany?", document)
        score = int8.token_states(*pad([np.asarray(ids)], card.pad_token_id), None)[0, 0]
        assert float(score) == pytest.approx(reranker_reference.logit(ids, types), abs=0.1)


@pytest.fixture(scope="module")
def minilm_int8_cosines(minilm_fp32_dir, tmp_path_factory) -> np.ndarray:
    """Per text of the corpus, the cosine of real MiniLM's int8 vector to its fp32 one, both
    as a replica serves them (``served_onnx``; the guard where this CPU needs it)."""
    folder = shutil.copytree(minilm_fp32_dir, tmp_path_factory.mktemp("q") / "minilm")
    card, source = ModelCard.from_folder(folder), folder / "onnx/model.onnx"
    ids = TextTokenizer(folder).encode(SENTENCES, card.max_tokens, truncate=True)
    fp32 = _vectors(served_onnx(source, card), folder, ids, None)
    int8 = _vectors(served_onnx(source, card, int8=True), folder, ids, None,
                    needs_saturation_guard())
    return (fp32 * int8).sum(axis=1)


def test_int8_meets_the_bar_on_real_weights(minilm_int8_cosines):
    """The issue's bar, on trained weights (random ones cannot show it): over the corpus,
    int8's cosine to fp32 has mean >= 0.995 and min >= 0.99. Quantizing every product
    misses it (0.9914 / 0.9807): docs/decisions/int8.md."""
    cosines = minilm_int8_cosines
    assert cosines.mean() >= 0.995 and cosines.min() >= 0.99, (
        f"mean {cosines.mean():.5f}, min {cosines.min():.5f}")


def test_the_products_kept_in_fp32_are_found_by_measuring(minilm_fp32_dir, jina_dir):
    """On real MiniLM the calibration finds the three products a one-at-a-time sweep found
    costly (layers 0-2's FFN down projections); on random weights, none."""
    card = ModelCard.from_folder(minilm_fp32_dir)
    prepared = served_onnx(minilm_fp32_dir / "onnx/model.onnx", card)
    assert wide_input_products(prepared, card) == [f"/l{n}.down.mm/MatMul" for n in range(3)]
    card = ModelCard.from_folder(jina_dir)
    spans = input_spans(served_onnx(jina_dir / "onnx/model.onnx", card), card)
    assert spans and max(spans.values()) < WIDE_INPUT
