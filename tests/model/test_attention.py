from encoder.model.attention import find_attention, fuse_attention
from encoder.model.tensors import Tensors
from tests.model.graphs import assert_same_states, op_counts, padded_batch, passed


def test_einsum_attention_is_found_with_its_mask_and_scale(jina_dir):
    (found,) = find_attention(Tensors.load(jina_dir / "onnx/model.onnx"))
    assert found.mask_input == "attention_mask"
    assert found.mask_value == -10000.0
    assert found.scale == 0.25  # 1 / sqrt(16), folded from the Mul on k
    assert found.key == "ks_sq"  # unscaled


def test_fused_attention_gives_equal_states_with_and_without_padding(jina_dir, tmp_path):
    source = jina_dir / "onnx/model.onnx"
    target, counts = passed(source, tmp_path / "model.onnx", lambda t: fuse_attention(t, 4))
    assert counts == [1]
    ops = op_counts(target)
    assert ops["MultiHeadAttention"] == 1 and ops["Einsum"] == 0 and ops["Softmax"] == 0
    assert_same_states(source, target)
    assert_same_states(source, target, tasks=[1], batch=padded_batch(rows=1, length=300))
