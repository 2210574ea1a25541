"""softmax and log_softmax against the definition, in float64 and with mpmath for extremes."""

import warnings

import mpmath
import numpy as np
import pytest
from hypothesis import given

from softmax_grad import log_softmax, softmax
from tests.strategies import logits


def _mp_softmax(row):
    """Softmax of one row in 50-digit arithmetic: the definition, no max shift."""
    with mpmath.workdps(50):
        e = [mpmath.exp(mpmath.mpf(float(v))) for v in row]
        total = mpmath.fsum(e)
        return np.array([float(v / total) for v in e])


def test_seed_worked_value():
    # The source thread prints softmax([1, 2]) = [0.26894142, 0.73105858]; check the
    # definition e^1/(e^1+e^2) = 1/(1+e) directly.
    expected = np.array([1 / (1 + np.e), np.e / (1 + np.e)])
    np.testing.assert_allclose(softmax(np.array([1, 2])), expected, rtol=1e-15)
    np.testing.assert_allclose(expected, [0.26894142, 0.73105858], atol=5e-9)


@given(logits(max_dims=3))
def test_matches_definition_on_every_axis(x):
    for axis in range(-x.ndim, x.ndim):
        e = np.exp(x)  # |x| <= 30, so the unshifted definition is safe in float64
        expected = e / e.sum(axis=axis, keepdims=True)
        np.testing.assert_allclose(softmax(x, axis=axis), expected, rtol=1e-12, atol=1e-300)


@given(logits(max_dims=2))
def test_log_softmax_is_log_of_definition(x):
    expected = x - np.log(np.exp(x).sum(axis=-1, keepdims=True))
    np.testing.assert_allclose(log_softmax(x), expected, rtol=1e-12, atol=1e-12)


@given(logits(max_dims=2))
def test_rows_sum_to_one_and_shift_invariance(x):
    y = softmax(x)
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-13)
    np.testing.assert_allclose(softmax(x + 123.0), y, rtol=1e-9, atol=1e-15)


def test_huge_logits_no_overflow_warning():
    x = np.array([[1000.0, 1001.0, 999.0], [1e308, -1e308, 0.0], [-1e308, -1e308, 1e308]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = softmax(x)
        logp = log_softmax(x)
    np.testing.assert_allclose(y[0], _mp_softmax([1000.0, 1001.0, 999.0]), rtol=1e-14)
    np.testing.assert_array_equal(y[1], [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(y[2], [0.0, 0.0, 1.0])
    assert np.all(np.isfinite(logp[0]))
    np.testing.assert_allclose(np.exp(logp[0]), y[0], rtol=1e-14)


def test_tiny_probabilities_log_softmax_stays_finite():
    x = np.array([0.0, -800.0])
    assert softmax(x)[1] == 0.0  # e^-800 underflows float64
    np.testing.assert_allclose(log_softmax(x), [0.0, -800.0], rtol=1e-15)


def test_minus_inf_is_masked_and_all_minus_inf_row_is_nan():
    x = np.array([[0.0, -np.inf, 0.0], [-np.inf, -np.inf, -np.inf]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = softmax(x)
        logp = log_softmax(x)
    np.testing.assert_array_equal(y[0], [0.5, 0.0, 0.5])
    assert np.all(np.isnan(y[1]))
    assert logp[0, 1] == -np.inf
    assert np.all(np.isnan(logp[1]))


def test_nan_propagates_to_its_row_only():
    x = np.array([[0.0, np.nan], [1.0, 2.0]])
    y = softmax(x)
    assert np.all(np.isnan(y[0]))
    np.testing.assert_allclose(y[1], _mp_softmax([1.0, 2.0]), rtol=1e-15)


@pytest.mark.parametrize("func", [softmax, log_softmax])
def test_dtypes(func):
    assert func(np.zeros(3, np.float32)).dtype == np.float32
    assert func(np.zeros(3, np.float64)).dtype == np.float64
    assert func(np.arange(3)).dtype == np.float64
    assert func([1, 2]).dtype == np.float64


def test_float32_matches_float64_reference():
    rng = np.random.default_rng(0)
    x = rng.normal(scale=5, size=(16, 33)).astype(np.float32)
    np.testing.assert_allclose(softmax(x), softmax(x.astype(np.float64)), rtol=2e-6, atol=1e-30)


@pytest.mark.parametrize("func", [softmax, log_softmax])
def test_bad_input_errors(func):
    with pytest.raises(ValueError, match="axis=2 is out of range"):
        func(np.zeros((2, 2)), axis=2)
    with pytest.raises(ValueError, match="0-d"):
        func(np.float64(1.0))
    with pytest.raises(TypeError, match="dtype"):
        func(np.array(["a", "b"]))
    with pytest.raises(TypeError, match="axis must be an int"):
        func(np.zeros(2), axis=1.0)


def test_empty_axis_gives_empty_result():
    assert softmax(np.zeros((3, 0))).shape == (3, 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_plus_inf_row_is_nan_throughout(dtype):
    # e^inf / sum_j e^x_j is inf/inf: no value, and no limit independent of how x grows, so
    # the whole row is NaN (as PyTorch, JAX and SciPy give), while other rows are unaffected.
    x = np.array(
        [[np.inf, 0.0, 1.0], [np.inf, np.inf, 0.0], [np.inf, -np.inf, 0.0], [0.0, 1.0, 2.0]],
        dtype,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = softmax(x)
        logp = log_softmax(x)
    assert y.dtype == dtype and logp.dtype == dtype
    assert np.all(np.isnan(y[:3])) and np.all(np.isnan(logp[:3]))
    np.testing.assert_allclose(y[3], _mp_softmax([0.0, 1.0, 2.0]), rtol=1e-6)


def test_plus_inf_on_another_axis_affects_only_its_row():
    x = np.array([[np.inf, 0.0], [1.0, 2.0]])
    y = softmax(x, axis=0)  # column 0 holds the +inf
    assert np.all(np.isnan(y[:, 0]))
    np.testing.assert_allclose(y[:, 1], _mp_softmax([0.0, 2.0]), rtol=1e-15)


def test_large_finite_logit_tends_to_the_one_hot_limit():
    # The convention is NaN exactly at +inf; any finite logit, however large, is the limit.
    y = softmax(np.array([1e308, 0.0, -1.0]))
    np.testing.assert_array_equal(y, [1.0, 0.0, 0.0])
