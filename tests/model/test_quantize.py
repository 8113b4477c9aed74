import shutil

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from encoder.ingress.tokenize import TextTokenizer
from encoder.model.card import ModelCard
from encoder.model.prepare import source_digest
from encoder.model.quantize import (
    WIDE_INPUT,
    input_spans,
    int8_can_saturate,
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


NO_VNNI, VNNI = {"avx2", "fma"}, {"avx2", "avx512f", "avx512_vnni"}


def _vectors(onnx_path, folder, ids, task_id=4):
    """Normalised vectors of ``ids`` as a replica's scheduler runs them (length-sorted runs)."""
    scheduler = Scheduler(OnnxModel(onnx_path, threads=1),
                          ModelCard.from_folder(folder), SchedulerSettings(parallel_runs=1))
    return l2_normalize(scheduler.run_window([Parcel.from_lists(task_id, ids)])[0])


def test_int8_copy_is_built_once_and_close_to_fp32(model_copy, jina_reference):
    source = model_copy / "onnx/model.onnx"
    first = quantized_model(source, ModelCard.from_folder(model_copy), VNNI)
    assert first.parent == source.parent and first.name.startswith("model.int8w-")
    built_at = first.stat().st_mtime_ns
    assert quantized_model(source, ModelCard.from_folder(model_copy), VNNI) == first
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


@pytest.mark.parametrize(("flags", "saturates"), [
    (NO_VNNI, True),                                 # AVX2 without VNNI
    ({"avx2", "avx512f", "avx512bw"}, True),         # AVX-512 without VNNI
    ({"avx2", "avx512f", "avx512_vnni"}, False),     # Zen 4, Ice Lake and later
    ({"avx2", "avx_vnni"}, False),                   # Alder Lake
    ({"asimd"}, False),                              # ARM: no x86 kernels
    (set(), False),                                  # flags unknown
])
def test_int8_can_saturate_only_without_vnni(flags, saturates):
    assert int8_can_saturate(flags) is saturates


def test_without_vnni_the_copy_has_7_bit_weights(model_copy):
    """Where 8-bit weights could saturate, the copy's weights fit in -64..64: a pair of
    products then stays within int16 (2 x 255 x 64 < 2^15), so the fast kernels are exact."""
    card = ModelCard.from_folder(model_copy)
    prepared = served_onnx(model_copy / "onnx/model.onnx", card)
    copies = {bits: quantized_model(prepared, card, flags)
              for bits, flags in ((7, NO_VNNI), (8, VNNI))}
    assert copies[7] != copies[8] and ".int8w7-" in copies[7].name
    for bits, path in copies.items():
        weights = [numpy_helper.to_array(t, str(path.parent))
                   for t in onnx.load(str(path), load_external_data=False).graph.initializer
                   if t.name.endswith("_quantized") and t.data_type == onnx.TensorProto.INT8]
        assert weights
        assert max(int(np.abs(w.astype(np.int32)).max()) for w in weights) == (
            64 if bits == 7 else 127)


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
    """Per CPU kind (with VNNI: 8-bit weights; without: 7-bit), per text of the corpus, the
    cosine of real MiniLM's int8 vector to its fp32 one, both as a replica runs them."""
    folder = shutil.copytree(minilm_fp32_dir, tmp_path_factory.mktemp("q") / "minilm")
    card, source = ModelCard.from_folder(folder), folder / "onnx/model.onnx"
    ids = TextTokenizer(folder).encode(SENTENCES, card.max_tokens, truncate=True)
    prepared = served_onnx(source, card)
    fp32 = _vectors(prepared, folder, ids, None)
    return {kind: (fp32 * _vectors(quantized_model(prepared, card, flags), folder, ids, None)
                   ).sum(axis=1) for kind, flags in (("VNNI", VNNI), ("no VNNI", NO_VNNI))}


@pytest.mark.parametrize("kind", ["VNNI", "no VNNI"])
def test_int8_meets_the_bar_on_real_weights(minilm_int8_cosines, kind):
    """The issue's bar, on trained weights (random ones cannot show it), for each CPU kind's
    copy: over the corpus, int8's cosine to fp32 has mean >= 0.995 and min >= 0.99.
    Quantizing every product misses it (0.9914 / 0.9807): docs/decisions/int8.md. Both
    kinds' kernels are exact on these weights, so this host computes what the other would."""
    cosines = minilm_int8_cosines[kind]
    assert cosines.mean() >= 0.995 and cosines.min() >= 0.99, (
        f"mean {cosines.mean():.5f}, min {cosines.min():.5f}")


def test_the_products_kept_in_fp32_are_found_by_measuring(minilm_fp32_dir, jina_dir):
    """On real MiniLM the calibration finds the three products a one-at-a-time sweep found
    costly (layers 0-2's FFN down projections), and for 7-bit weights those and more; on
    random weights, none."""
    card = ModelCard.from_folder(minilm_fp32_dir)
    prepared = served_onnx(minilm_fp32_dir / "onnx/model.onnx", card)
    eight = wide_input_products(prepared, card, WIDE_INPUT[8])
    assert eight == [f"/l{n}.down.mm/MatMul" for n in range(3)]
    assert set(eight) < set(wide_input_products(prepared, card, WIDE_INPUT[7]))
    card = ModelCard.from_folder(jina_dir)
    spans = input_spans(served_onnx(jina_dir / "onnx/model.onnx", card), card)
    assert spans and max(spans.values()) < min(WIDE_INPUT.values())
