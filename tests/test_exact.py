"""tests/exact.py, the integer reference of the rounding-bound tests, against Fractions."""

from fractions import Fraction

import numpy as np
import pytest

from tests.exact import exact_error, exact_vjp


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exact_vjp_and_error_equal_the_fraction_values(dtype):
    rng = np.random.default_rng(3)
    y = rng.random((4, 9)).astype(dtype)
    dy = rng.normal(size=(4, 9)).astype(dtype)
    y[1, 2] = np.finfo(dtype).smallest_subnormal  # the largest denominator a row can have
    dy[2] = 0.0
    dy[3, 0] = -np.finfo(dtype).max
    computed = (y * (dy - np.sum(y * dy, axis=-1, keepdims=True))).astype(dtype)
    for r, (num, e) in enumerate(exact_vjp(y, dy)):
        fy = [Fraction(float(v)) for v in y[r]]
        fd = [Fraction(float(v)) for v in dy[r]]
        dot = sum(a * b for a, b in zip(fy, fd, strict=True))
        want = [a * (b - dot) for a, b in zip(fy, fd, strict=True)]
        assert [Fraction(m, 2**e) for m in num] == want
        errors = [
            float(abs(Fraction(float(c)) - w)) for c, w in zip(computed[r], want, strict=True)
        ]
        np.testing.assert_array_equal(exact_error(computed[r : r + 1], [(num, e)])[0], errors)
