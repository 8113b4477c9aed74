import shutil

import pytest

from encoder.batching import TokenBatch
from encoder.model_card import ModelCard
from encoder.pooling import l2_normalize
from encoder.quantize import quantized_model, source_digest
from encoder.runtime import OnnxModel
from encoder.scheduler import Scheduler
from encoder.settings import BatchingSettings
from tests.reference import cosine

TEXTS = ["Hello world", "你好，世界", "a longer passage about quantization " * 6]


@pytest.fixture(scope="module")
def model_copy(jina_dir, tmp_path_factory):
    """The int8 copy is written beside the model: work on a private copy."""
    return shutil.copytree(jina_dir, tmp_path_factory.mktemp("q") / "jina")


def _vectors(onnx_path, folder, reference):
    scheduler = Scheduler(OnnxModel(onnx_path, threads=1), ModelCard.from_folder(folder),
                          BatchingSettings(parallel_runs=1))
    ids = [reference.ids(t) for t in TEXTS]
    return l2_normalize(scheduler.run_window([TokenBatch.from_lists(4, ids)])[0])


def test_int8_copy_is_built_once_and_close_to_fp32(model_copy, jina_reference):
    source = model_copy / "onnx/model.onnx"
    first = quantized_model(source)
    assert first.parent == source.parent and first.name.startswith("model.int8-")
    built_at = first.stat().st_mtime_ns
    assert quantized_model(source) == first
    assert first.stat().st_mtime_ns == built_at  # reused, not rebuilt
    fp32 = _vectors(source, model_copy, jina_reference)
    int8 = _vectors(first, model_copy, jina_reference)
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
