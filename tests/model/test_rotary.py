from encoder.model.rotary import find_rotary, fuse_rotary
from encoder.model.tensors import Tensors
from tests.model.graphs import assert_same_states, op_counts, passed


def test_rope_on_q_and_k_is_found_with_its_caches(jina_dir):
    found = find_rotary(Tensors.load(jina_dir / "onnx/model.onnx"))
    assert len(found) == 2
    assert {(r.cos, r.sin, r.half) for r in found} == {("cos_cache", "sin_cache", 8)}
    assert {r.source for r in found} == {"q_heads", "k_heads"}


def test_fused_rope_gives_equal_states(jina_dir, tmp_path):
    source = jina_dir / "onnx/model.onnx"
    target, counts = passed(source, tmp_path / "model.onnx", lambda t: fuse_rotary(t, 4))
    assert counts == [2]
    ops = op_counts(target)
    assert ops["RotaryEmbedding"] == 2 and ops["Neg"] == 0 and ops["Expand"] == 0
    assert_same_states(source, target)
