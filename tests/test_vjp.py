"""softmax_vjp and log_softmax_vjp against J^T dy built from finite-difference Jacobians."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from softmax_grad import jacobian_vectorized, log_softmax, log_softmax_vjp, softmax, softmax_vjp
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
