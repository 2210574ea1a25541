"""Hypothesis strategies shared by the tests: finite logits of any shape."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

finite = st.floats(-30, 30, allow_nan=False, allow_infinity=False, width=64)


def logits(min_dims: int = 1, max_dims: int = 3, max_side: int = 6, dtype=np.float64):
    """Arrays of moderate finite logits, shapes with 1..max_side entries per axis."""
    return hnp.arrays(
        dtype,
        hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=max_side),
        elements=st.floats(-30, 30, allow_nan=False, width=np.dtype(dtype).itemsize * 8),
    )


def vectors(max_n: int = 8):
    """1-D logit vectors of length 1..max_n."""
    return logits(min_dims=1, max_dims=1, max_side=max_n)
