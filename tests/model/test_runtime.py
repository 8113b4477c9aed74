"""The runtime's padding: what every run feeds the session."""

import numpy as np

from encoder.model.runtime import pad


def test_pad_masks_padding():
    ids, mask = pad([np.array([5, 6, 7]), np.array([8])], pad_id=1)
    assert ids.tolist() == [[5, 6, 7], [8, 1, 1]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert ids.dtype == np.int64
