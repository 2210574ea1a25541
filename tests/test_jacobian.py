"""The three Jacobians against finite differences and the identities every Jacobian obeys."""

import numpy as np
import pytest
from hypothesis import given

from softmax_grad import (
    diagonal_only_derivative,
    jacobian_einsum,
    jacobian_iterative,
    jacobian_vectorized,
    softmax,
)
from tests.strategies import logits, vectors


def _fd_jacobian(x, h=1e-6):
    """Central differences of softmax, column j = d softmax / d x_j (independent of the code)."""
    n = x.size
    jac = np.empty((n, n))
    for j in range(n):
        e = np.zeros(n)
        e[j] = h
        jac[:, j] = (softmax(x + e) - softmax(x - e)) / (2 * h)
    return jac


def test_seed_worked_value():
    s = softmax(np.array([1.0, 2.0]))
    v = np.e / (1 + np.e) ** 2  # s1 * s2 = e/(1+e)^2, from the definition
    expected = np.array([[v, -v], [-v, v]])
    for jac in (jacobian_iterative(s), jacobian_vectorized(s), jacobian_einsum(s)):
        np.testing.assert_allclose(jac, expected, rtol=1e-15)
    assert round(v, 8) == 0.19661193


@given(vectors())
def test_all_three_agree_and_match_finite_differences(x):
    s = softmax(x)
    ref = _fd_jacobian(x)
    for jac in (jacobian_iterative(s), jacobian_vectorized(s), jacobian_einsum(s)):
        assert jac.shape == (x.size, x.size)
        np.testing.assert_allclose(jac, ref, atol=1e-8)
    np.testing.assert_allclose(jacobian_iterative(s), jacobian_vectorized(s), rtol=0, atol=1e-16)


@given(vectors())
def test_identities(x):
    jac = jacobian_vectorized(softmax(x))
    s = softmax(x)
    np.testing.assert_array_equal(jac, jac.T)
    np.testing.assert_allclose(jac.sum(axis=1), 0.0, atol=1e-15)
    np.testing.assert_allclose(jac.sum(axis=0), 0.0, atol=1e-15)
    eig = np.linalg.eigvalsh(jac)
    assert eig.min() >= -1e-15  # positive semi-definite
    assert eig.max() <= s.max() + 1e-15
    np.testing.assert_allclose(jac @ np.ones(x.size), 0.0, atol=1e-15)  # null vector 1


def test_rank_is_n_minus_one_for_distinct_probabilities():
    s = softmax(np.linspace(-1, 2, 7))
    assert np.linalg.matrix_rank(jacobian_vectorized(s)) == 6


@given(logits(min_dims=2, max_dims=3))
def test_einsum_batches_equal_per_row_vectorized(x):
    s = softmax(x)
    jac = jacobian_einsum(s)
    assert jac.shape == x.shape + (x.shape[-1],)
    for idx in np.ndindex(x.shape[:-1]):
        np.testing.assert_allclose(jac[idx], jacobian_vectorized(s[idx]), rtol=0, atol=1e-16)


def test_float32_kept():
    s = softmax(np.array([0.5, 1.5, -1.0], np.float32))
    for f in (jacobian_iterative, jacobian_vectorized, jacobian_einsum):
        assert f(s).dtype == np.float32


@given(vectors())
def test_diagonal_only_is_the_jacobian_diagonal_and_nothing_more(x):
    d = diagonal_only_derivative(x)
    jac = _fd_jacobian(x)
    np.testing.assert_allclose(d, np.diag(jac), atol=1e-8)


def test_diagonal_only_misses_the_off_diagonal():
    x = np.array([0.1, 0.7, -0.4])
    off = _fd_jacobian(x) - np.diag(diagonal_only_derivative(x))
    assert np.abs(off).max() > 0.05


@pytest.mark.parametrize("f", [jacobian_iterative, jacobian_vectorized])
def test_vector_forms_reject_batches(f):
    with pytest.raises(ValueError, match=r"1-D vector .* got shape \(2, 3\)"):
        f(np.full((2, 3), 1 / 3))


def test_einsum_rejects_scalar():
    with pytest.raises(ValueError, match="0-d"):
        jacobian_einsum(np.float64(1.0))
