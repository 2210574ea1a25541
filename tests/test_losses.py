"""Losses: values from the definition, gradients from finite differences, the fused identity."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from softmax_grad import (
    cross_entropy,
    mse,
    numerical_gradient,
    softmax,
    softmax_cross_entropy,
    softmax_vjp,
)
from tests.strategies import logits


def _labels_for(x, seed=0):
    return np.random.default_rng(seed).integers(0, x.shape[-1], size=x.shape[:-1])


def test_mse_value_and_gradient():
    y = np.array([[0.2, 0.8], [0.5, 0.5]])
    t = np.array([[0.0, 1.0], [1.0, 0.0]])
    loss, grad = mse(y, t)
    assert loss == pytest.approx((0.04 + 0.04 + 0.25 + 0.25) / 4, rel=1e-15)
    np.testing.assert_allclose(grad, numerical_gradient(lambda v: mse(v, t)[0], y), rtol=1e-8)


def test_cross_entropy_value_and_gradient():
    p = np.array([[0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])
    labels = np.array([1, 2])
    loss, grad = cross_entropy(p, labels)
    assert loss == pytest.approx(-(np.log(0.5) + np.log(0.8)) / 2, rel=1e-15)
    num = numerical_gradient(lambda v: cross_entropy(v, labels)[0], p)
    np.testing.assert_allclose(grad, num, rtol=1e-7, atol=1e-12)


def test_cross_entropy_of_zero_probability_is_infinite_without_nan():
    loss, grad = cross_entropy(np.array([[1.0, 0.0]]), np.array([1]))
    assert loss == np.inf
    assert grad[0, 0] == 0.0 and grad[0, 1] == -np.inf


@given(logits(min_dims=1, max_dims=3, max_side=5))
def test_fused_gradient_equals_composition(x):
    labels = _labels_for(x)
    p = softmax(x)
    loss_composed, dp = cross_entropy(p, labels)
    loss_fused, dx = softmax_cross_entropy(x, labels)
    np.testing.assert_allclose(dx, softmax_vjp(p, dp), rtol=1e-9, atol=1e-15)
    assert loss_fused == pytest.approx(loss_composed, rel=1e-12)


def test_fused_gradient_is_p_minus_onehot_over_batch_and_matches_fd():
    x = np.array([[2.0, 0.5, -1.0], [0.0, 0.0, 3.0]])
    labels = np.array([0, 1])
    loss, dx = softmax_cross_entropy(x, labels)
    onehot = np.eye(3)[labels]
    np.testing.assert_allclose(dx, (softmax(x) - onehot) / 2, rtol=1e-15)
    num = numerical_gradient(lambda z: softmax_cross_entropy(z, labels)[0], x, method="complex")
    np.testing.assert_allclose(dx, num, rtol=1e-12, atol=1e-15)


def test_fused_loss_is_finite_where_composition_overflows():
    x = np.array([[0.0, 1000.0]])
    loss, _ = softmax_cross_entropy(x, np.array([0]))
    assert loss == pytest.approx(1000.0, rel=1e-15)


@pytest.mark.parametrize("func", [cross_entropy, softmax_cross_entropy])
@pytest.mark.parametrize("bad", [3, -1])
def test_labels_out_of_range(func, bad):
    with pytest.raises(ValueError, match=rf"labels must lie in \[0, 3\) for 3 classes, got {bad}"):
        func(np.full((2, 3), 1 / 3), np.array([0, bad]))


@pytest.mark.parametrize("func", [cross_entropy, softmax_cross_entropy])
def test_labels_shape_and_dtype(func):
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\)"):
        func(np.full((2, 3), 1 / 3), np.array([0, 1, 2]))
    with pytest.raises(TypeError, match="labels must be integers"):
        func(np.full((2, 3), 1 / 3), np.array([0.0, 1.0]))


def test_mse_shape_mismatch():
    with pytest.raises(ValueError, match=r"y\.shape=\(2,\) and target\.shape=\(3,\)"):
        mse(np.zeros(2), np.zeros(3))


@given(st.integers(1, 6), st.integers(2, 6))
def test_fused_gradient_rows_sum_to_zero(batch, n):
    x = np.random.default_rng(batch * 7 + n).normal(size=(batch, n))
    _, dx = softmax_cross_entropy(x, _labels_for(x))
    np.testing.assert_allclose(dx.sum(axis=-1), 0.0, atol=1e-15)
