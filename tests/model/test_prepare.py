import os
import shutil

import numpy as np
import onnx
import pytest

from encoder.model.card import ModelCard
from encoder.model.lora import find_lora_merges
from encoder.model.prepare import prepared_model
from encoder.model.quantize import quantized_model
from encoder.model.tensors import Tensors
from tests.model.graphs import assert_same_states, op_counts, padded_batch, session, states
from tests.reference import cosine


@pytest.fixture
def jina_copy(jina_dir, tmp_path):
    """Copies are written beside the model: work on a private folder."""
    return shutil.copytree(jina_dir, tmp_path / "jina", ignore=shutil.ignore_patterns("*.prep*"))


def test_the_export_is_prepared_once_with_equal_states(jina_copy, caplog):
    source = jina_copy / "onnx/model.onnx"
    with caplog.at_level("INFO"):
        prepared = prepared_model(source, heads=4)
    assert prepared.parent == source.parent and prepared.name.startswith("model.prep2-")
    assert ("LoRA merges 4, rotary embeddings 2, stack-and-split 1, attention blocks 1"
            in caplog.text)
    built_at = prepared.stat().st_mtime_ns
    assert prepared_model(source, heads=4) == prepared
    assert prepared.stat().st_mtime_ns == built_at  # reused, not rebuilt
    ops = op_counts(prepared)
    assert (ops["If"], ops["MultiHeadAttention"], ops["RotaryEmbedding"], ops["Einsum"]) == (
        1, 2, 2, 0)
    assert [o.name for o in session(prepared).get_outputs()] == ["text_embeds"]
    assert_same_states(source, prepared)


def test_without_the_head_count_only_the_lora_and_outputs_are_prepared(jina_copy):
    prepared = prepared_model(jina_copy / "onnx/model.onnx", heads=None)
    assert op_counts(prepared)["Einsum"] == 2
    assert_same_states(jina_copy / "onnx/model.onnx", prepared, tasks=[2])


def test_a_plain_export_is_served_as_it_is(minilm_dir, tmp_path):
    folder = shutil.copytree(minilm_dir, tmp_path / "minilm")
    before = sorted(os.listdir(folder / "onnx"))
    assert prepared_model(folder / "onnx/model.onnx", heads=12) == folder / "onnx/model.onnx"
    assert sorted(os.listdir(folder / "onnx")) == before


def test_a_read_only_model_folder_gets_its_copy_in_the_user_cache(jina_copy, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    # The suite may run as root, for whom no folder is read-only: say this one is.
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path) == str(
        jina_copy / "onnx") else real_access(path, mode))
    prepared = prepared_model(jina_copy / "onnx/model.onnx", heads=4)
    assert prepared.parent == tmp_path / "home/.cache/jina-embeddings-serve/prepared"
    assert_same_states(jina_copy / "onnx/model.onnx", prepared, tasks=[0])


def test_int8_of_the_prepared_graph_quantizes_every_weight_and_no_adapter(jina_copy):
    prepared = prepared_model(jina_copy / "onnx/model.onnx", heads=4)
    ops = op_counts(quantized_model(prepared, ModelCard.from_folder(jina_copy)))
    # qkv and the output projection; the five LoRA products read Gathers, not weights.
    assert ops["MatMulInteger"] + ops["DynamicQuantizeMatMul"] == 2
    assert ops["MatMul"] == 5
    assert ops["DequantizeLinear"] == 0  # lookups (embeddings, adapters) stay fp32


def test_the_real_graph_is_prepared_with_equal_vectors(jina_v3_dir):
    """jina-v3's published graph (random weights): every pass finds every instance, and
    pooled vectors equal the export's for all five tasks in a padded batch. (The copy may
    be cached by an earlier test of the run: the prepared graph itself is checked.)"""
    source = jina_v3_dir / "onnx/model.onnx"
    card = ModelCard.from_folder(jina_v3_dir)
    prepared = prepared_model(source, card.attention_heads)
    # 96 linear layers, the word and token-type embeddings, and the pooler's (dropped).
    assert len(find_lora_merges(Tensors.load(source))) == 99
    assert find_lora_merges(Tensors.load(prepared)) == []
    ops = op_counts(prepared)
    assert ops["RotaryEmbedding"] == 48 and ops["If"] == 24
    assert ops["MultiHeadAttention"] == 48  # flash and masked per block
    assert ops["Einsum"] == ops["Neg"] == ops["Transpose"] == 0
    outputs = onnx.load(str(prepared), load_external_data=False).graph.output
    assert [o.name for o in outputs] == ["text_embeds"]  # the pooler's dropped
    ids, mask = padded_batch(rows=3, length=24)
    before, after = session(source), session(prepared)
    export = [states(before, ids, mask, task, ["text_embeds"])[0] for task in range(5)]
    for task in range(5):
        (b,) = states(after, ids, mask, task, ["text_embeds"])
        for row in range(len(ids)):
            keep = mask[row].astype(bool)
            pooled = b[row][keep].mean(0)
            assert cosine(export[task][row][keep].mean(0), pooled) >= 0.99999
            assert np.abs(export[task][row][keep] - b[row][keep]).max() < 1e-4
            # The control: the same check fails against every other task's vector, so it
            # sees a task mixed up even with these random weights.
            for other in set(range(5)) - {task}:
                assert cosine(export[other][row][keep].mean(0), pooled) < 0.99999
