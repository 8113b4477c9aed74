from encoder.model.graph import bypass_concat_split, keep_outputs
from tests.model.graphs import assert_same_states, op_counts, passed


def test_unread_outputs_go_with_what_only_they_need(jina_dir, tmp_path):
    source = jina_dir / "onnx/model.onnx"
    target, counts = passed(source, tmp_path / "model.onnx",
                            lambda t: keep_outputs(t, ["text_embeds"]))
    assert counts == [1]
    assert op_counts(target)["Gemm"] == 0  # the pooler
    assert_same_states(source, target)
    assert passed(target, tmp_path / "again.onnx",
                  lambda t: keep_outputs(t, ["text_embeds"]))[1] == [0]


def test_stacking_and_splitting_again_is_bypassed(jina_dir, tmp_path):
    source = jina_dir / "onnx/model.onnx"
    target, counts = passed(source, tmp_path / "model.onnx", bypass_concat_split)
    assert counts == [1]
    assert op_counts(target)["Split"] == 0
    assert_same_states(source, target)
