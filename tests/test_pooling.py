import numpy as np

from encoder.pooling import cls_pool, finish, l2_normalize, mean_pool


def test_mean_pool_ignores_masked_positions():
    states = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    mask = np.array([[1, 1, 0], [1, 0, 0]])
    pooled = mean_pool(states, mask)
    np.testing.assert_allclose(pooled[0], states[0, :2].mean(axis=0))
    np.testing.assert_allclose(pooled[1], states[1, 0])
    assert pooled.dtype == np.float32
    np.testing.assert_array_equal(cls_pool(states, mask), states[:, 0])


def test_finish_truncates_then_renormalises():
    rng = np.random.default_rng(0)
    raw = rng.standard_normal((3, 16)).astype(np.float32)
    out = finish(raw, 8, normalized=True)
    expected = l2_normalize(l2_normalize(raw)[:, :8])
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(finish(raw, None, normalized=False), raw)
    np.testing.assert_array_equal(finish(raw, 4, normalized=False), raw[:, :4])


def test_zero_vector_stays_finite():
    assert np.isfinite(l2_normalize(np.zeros((1, 4), dtype=np.float32))).all()
