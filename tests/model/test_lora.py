from onnx import helper

from encoder.model.graph import keep_outputs
from encoder.model.lora import find_lora_merges, lora_to_activations
from encoder.model.tensors import Tensors
from tests.model.graphs import assert_same_states, op_counts, passed


def test_every_merge_of_the_export_is_found(jina_dir):
    merges = find_lora_merges(Tensors.load(jina_dir / "onnx/model.onnx"))
    weights = sorted(m.weight for m in merges)
    assert weights == ["out", "pooler", "qkv", "token_type", "word"]
    assert {m.scale for m in merges} == {0.25}
    assert {m.task for m in merges} == {"task_id"}


def test_merges_move_to_activations_with_equal_states(jina_dir, tmp_path):
    source = jina_dir / "onnx/model.onnx"
    target, counts = passed(source, tmp_path / "model.onnx", lambda t: keep_outputs(
        t, ["text_embeds"]), lora_to_activations)
    assert counts == [1, 4]
    assert find_lora_merges(Tensors.load(target)) == []
    assert op_counts(target)["Transpose"] == 0  # the weights are pre-transposed constants
    assert_same_states(source, target)


def test_a_merge_another_op_reads_is_left_as_it_is(jina_dir, tmp_path):
    """The pooler's Gemm is no pattern the pass knows, and a merged weight read as a graph
    output must stay: both merges are kept, and the outputs stay equal."""
    source = jina_dir / "onnx/model.onnx"

    def expose_qkv(tensors: Tensors) -> int:
        tensors.model.graph.output.append(helper.make_empty_tensor_value_info("qkv/merged"))
        return 1

    target, counts = passed(source, tmp_path / "model.onnx", expose_qkv, lora_to_activations)
    assert counts == [1, 3]  # the word table, the token-type row, the output projection
    assert sorted(m.weight for m in find_lora_merges(Tensors.load(target))) == ["pooler", "qkv"]
    assert_same_states(source, target, tasks=[0, 4])
