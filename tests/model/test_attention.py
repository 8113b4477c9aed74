import numpy as np
import onnx
import pytest

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
    # One If per block: flash MultiHeadAttention without padding, masked with it.
    assert ops["If"] == 1 and ops["MultiHeadAttention"] == 2
    assert ops["Einsum"] == 0 and ops["Softmax"] == 0
    assert_same_states(source, target)  # padded rows: the masked branch
    assert_same_states(source, target, tasks=[1], batch=padded_batch(rows=1, length=300))
    full = padded_batch(rows=2, length=40)[0][:1].repeat(2, axis=0)
    assert_same_states(source, target, batch=(full, np.ones_like(full)))  # the flash branch


def test_each_branch_is_taken_by_what_the_mask_says(jina_dir, tmp_path):
    """With a mask of all ones the masked branch would give the same numbers: prove the flash
    branch runs by making the masked one wrong."""
    source = jina_dir / "onnx/model.onnx"
    target, _ = passed(source, tmp_path / "model.onnx", lambda t: fuse_attention(t, 4))
    model = onnx.load(str(target))
    (branch,) = [n for n in model.graph.node if n.op_type == "If"]
    masked = next(a.g for a in branch.attribute if a.name == "else_branch")
    masked.node[0].attribute.append(onnx.helper.make_attribute("unidirectional", 1))
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    ids = padded_batch(rows=1, length=30)[0]
    unpadded = (ids, np.ones_like(ids))
    assert_same_states(target, broken, batch=unpadded)  # flash: the edit is not on its path
    padded = padded_batch(rows=3, length=30)
    with pytest.raises(AssertionError):
        assert_same_states(target, broken, batch=padded)
