"""softmax_vjp and log_softmax_vjp against J^T dy built from finite-difference Jacobians."""

from fractions import Fraction

import mpmath
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from softmax_grad import (
    jacobian_vectorized,
    log_softmax,
    log_softmax_vjp,
    softmax,
    softmax_vjp,
    vjp_error_bound,
)
from tests.strategies import logits


def _fd_vjp(func, x, dy, axis, h=1e-6):
    """dx_k = d <dy, func(x)> / d x_k by central differences: J^T dy without any formula."""
    dx = np.empty_like(x)
    for k in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[k] = h
        dx[k] = np.sum(dy * (func(x + e, axis=axis) - func(x - e, axis=axis))) / (2 * h)
    return dx


@given(logits(max_dims=3, max_side=4), st.data())
def test_softmax_vjp_equals_finite_difference_vjp_on_any_axis(x, data):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    rng = np.random.default_rng(x.size)
    dy = rng.normal(size=x.shape)
    dx = softmax_vjp(softmax(x, axis=axis), dy, axis=axis)
    np.testing.assert_allclose(dx, _fd_vjp(softmax, x, dy, axis), atol=1e-7)


@given(logits(max_dims=3, max_side=4), st.data())
def test_log_softmax_vjp_equals_finite_difference_vjp(x, data):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    dy = np.random.default_rng(x.size).normal(size=x.shape)
    dx = log_softmax_vjp(log_softmax(x, axis=axis), dy, axis=axis)
    np.testing.assert_allclose(dx, _fd_vjp(log_softmax, x, dy, axis), atol=1e-6)


@given(logits(min_dims=1, max_dims=1, max_side=10))
def test_vjp_is_jacobian_transpose_times_dy(x):
    y = softmax(x)
    dy = np.random.default_rng(x.size).normal(size=x.shape)
    jac = np.diag(y) - np.outer(y, y)  # the matrix form from the definition
    np.testing.assert_allclose(softmax_vjp(y, dy), jac.T @ dy, atol=1e-15)
    np.testing.assert_allclose(softmax_vjp(y, dy), jacobian_vectorized(y) @ dy, atol=1e-15)


@given(logits(max_dims=2))
def test_constant_upstream_gradient_gives_zero(x):
    # Softmax is invariant to adding a constant to dy: rows of J sum to zero.
    y = softmax(x)
    np.testing.assert_allclose(softmax_vjp(y, np.full_like(y, 3.5)), 0.0, atol=1e-14)


def test_dtypes():
    y = softmax(np.array([1.0, 2.0, 3.0], np.float32))
    assert softmax_vjp(y, np.ones(3, np.float32)).dtype == np.float32
    assert softmax_vjp(y.astype(np.float64), np.ones(3)).dtype == np.float64


def test_shape_mismatch_shows_both_shapes():
    with pytest.raises(ValueError, match=r"y\.shape=\(2, 3\) and dy\.shape=\(3, 2\)"):
        softmax_vjp(np.ones((2, 3)), np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"logp\.shape=\(3,\) and dy\.shape=\(4,\)"):
        log_softmax_vjp(np.zeros(3), np.zeros(4))


@pytest.mark.parametrize("func", [softmax_vjp, log_softmax_vjp])
def test_bad_axis(func):
    with pytest.raises(ValueError, match="axis=-3 is out of range"):
        func(np.ones((2, 3)), np.ones((2, 3)), axis=-3)


def test_nan_propagates_to_its_row_only():
    y = np.array([[0.5, 0.5], [0.25, 0.75]])
    dy = np.array([[np.nan, 1.0], [1.0, 2.0]])
    dx = softmax_vjp(y, dy)
    assert np.all(np.isnan(dx[0]))
    assert np.all(np.isfinite(dx[1]))


def test_plus_inf_logit_row_gives_nan_gradient_row():
    # softmax of a row with +inf is NaN throughout; its backward propagates that, row by row.
    x = np.array([[np.inf, 0.0, 1.0], [0.0, 1.0, 2.0]])
    dx = softmax_vjp(softmax(x), np.ones_like(x))
    assert np.all(np.isnan(dx[0]))
    np.testing.assert_allclose(dx[1], 0.0, atol=1e-16)  # dy = 1 is orthogonal to J's range


# ---- the rounding-error bound ------------------------------------------------------------------


def _exact_vjp(y, dy):
    """dx_i = y_i (dy_i - <y, dy>) in exact rational arithmetic from the floating inputs."""
    out = np.empty(y.shape, dtype=object)
    for r in range(y.shape[0]):
        fy = [Fraction(float(v)) for v in y[r]]
        fd = [Fraction(float(v)) for v in dy[r]]
        dot = sum(a * b for a, b in zip(fy, fd, strict=True))
        out[r] = [a * (b - dot) for a, b in zip(fy, fd, strict=True)]
    return out


def test_bound_value_for_a_small_case_by_hand():
    # y = (1/2, 1/2), dy = (1, 0): S = 1/2, <y, dy> = 1/2, |dy_i - <y, dy>| = 1/2, n = 2.
    u = 2.0**-53
    gamma4, gamma2 = 4 * u / (1 - 4 * u), 2 * u / (1 - 2 * u)
    eta = 2.0**-1074
    expected = (0.5 * (gamma4 * 0.5 + gamma2 * 0.5) + 5 * eta) * (1 + 1e-6)
    bound = vjp_error_bound(np.array([0.5, 0.5]), np.array([1.0, 0.0]))
    np.testing.assert_allclose(bound, [expected, expected], rtol=1e-15)
    u32 = 2.0**-24
    g = (2 + 3) * u32 / (1 - 5 * u32)  # quadratic: gamma_{n+3} |y_i| (S + |dy_i|)
    q = vjp_error_bound(
        np.array([0.5, 0.5], np.float32), np.array([1.0, 0.0], np.float32), algorithm="quadratic"
    )
    eta32 = float(np.finfo(np.float32).smallest_subnormal)
    np.testing.assert_allclose(
        q, [(g * 0.5 * 1.5 + 6 * eta32) * (1 + 1e-6), (g * 0.5 * 0.5 + 6 * eta32) * (1 + 1e-6)]
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 2, 7, 64, 1000])
def test_bound_holds_for_numpy_vjp_in_any_summation_order(dtype, n):
    rng = np.random.default_rng(n)
    y = softmax(rng.normal(scale=4.0, size=(4, n))).astype(dtype)
    dy = rng.normal(size=(4, n)).astype(dtype)
    # Cancellation: dy nearly constant makes dy_i - <y, dy> small, the hard case for the bound.
    dy[1] = dtype(1) + rng.normal(size=n).astype(dtype) * dtype(1e-3)
    exact = _exact_vjp(y, dy)
    bound = vjp_error_bound(y, dy)
    for order in (slice(None), slice(None, None, -1)):  # two summation orders
        dot = np.sum(y[:, order] * dy[:, order], axis=-1, keepdims=True, dtype=dtype)
        computed = y * (dy - dot)
        err = np.array(
            [
                [abs(Fraction(float(c)) - e) for c, e in zip(cr, er, strict=True)]
                for cr, er in zip(computed, exact, strict=True)
            ],
            dtype=object,
        ).astype(np.float64)
        assert np.all(err <= bound)


def test_bound_is_not_vacuous():
    # An error of 2 gamma_n S (a dot product off by twice its worst case) must exceed the bound.
    rng = np.random.default_rng(0)
    n = 50
    y = softmax(rng.normal(size=n)).astype(np.float32)
    dy = rng.normal(size=n).astype(np.float32)
    u = 2.0**-24
    s = float(np.sum(np.abs(y.astype(float) * dy)))
    bound = vjp_error_bound(y, dy)
    assert np.all(bound < np.abs(y) * 4 * n * u * s + 1e-30)
    assert np.all(bound >= np.abs(y.astype(float)) * n * u * s)


def test_bound_with_mpmath_reference_for_float32_kernel_sized_rows():
    # float32 VJP in NumPy (pairwise sum) against mpmath at 50 digits from the same inputs.
    rng = np.random.default_rng(3)
    y = softmax(rng.normal(size=(2, 257))).astype(np.float32)
    dy = rng.normal(size=(2, 257)).astype(np.float32)
    computed = softmax_vjp(y, dy)
    bound = vjp_error_bound(y, dy)
    with mpmath.workdps(50):
        for r in range(2):
            dot = mpmath.fsum(
                mpmath.mpf(float(a)) * float(b) for a, b in zip(y[r], dy[r], strict=True)
            )
            for i in range(257):
                exact = mpmath.mpf(float(y[r, i])) * (float(dy[r, i]) - dot)
                assert abs(float(computed[r, i]) - exact) <= bound[r, i]


def test_bound_arguments():
    with pytest.raises(ValueError, match="unknown algorithm='cubic'"):
        vjp_error_bound(np.ones(2), np.ones(2), algorithm="cubic")
    with pytest.raises(ValueError, match="floating dtype"):
        vjp_error_bound(np.ones(2), np.ones(2), dtype=np.int32)
    with pytest.raises(ValueError, match=r"y\.shape=\(2,\) and dy\.shape=\(3,\)"):
        vjp_error_bound(np.ones(2), np.ones(3))
    assert vjp_error_bound(np.ones(2, np.float32), np.ones(2)).dtype == np.float64
    b32 = vjp_error_bound(np.full(2, 0.5, np.float32), np.ones(2, np.float32))
    b64 = vjp_error_bound(np.full(2, 0.5), np.ones(2))
    assert np.all(b32 > 1e8 * b64)  # float32 default when both inputs are float32
