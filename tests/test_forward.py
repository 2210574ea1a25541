"""softmax and log_softmax against the definition, in float64 and with mpmath for extremes."""

import warnings

import mpmath
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

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


# ---- masks (where=) ----------------------------------------------------------------------------


def _masks_and_logits():
    """(x, mask): logits of shape (B, n) and a boolean mask of the same shape."""
    shapes = hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=7)
    return shapes.flatmap(
        lambda s: st.tuples(
            hnp.arrays(np.float64, s, elements=st.floats(-30, 30)),
            hnp.arrays(np.bool_, s),
        )
    )


@given(_masks_and_logits())
def test_mask_is_the_definition_over_the_kept_entries(xm):
    x, mask = xm
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning, not even on rows with nothing kept
        y = softmax(x, where=mask)
        logp = log_softmax(x, where=mask)
    for r in range(x.shape[0]):
        kept = mask[r]
        assert np.all(y[r, ~kept] == 0) and np.all(logp[r, ~kept] == -np.inf)
        if kept.any():  # the definition on the kept entries alone (mpmath, 50 digits)
            np.testing.assert_allclose(y[r, kept], _mp_softmax(x[r, kept]), rtol=1e-14)
            np.testing.assert_allclose(
                logp[r, kept], np.log(_mp_softmax(x[r, kept])), rtol=1e-13, atol=1e-13
            )
    np.testing.assert_allclose(np.exp(logp), y, rtol=1e-13, atol=0)  # padding rows: 0 = 0


@given(_masks_and_logits())
def test_mask_equals_the_minus_inf_logit_formula_on_rows_with_something_kept(xm):
    x, mask = xm
    rows = mask.any(axis=-1)
    with np.errstate(invalid="ignore"):
        minus_inf = softmax(np.where(mask, x, -np.inf))
        log_minus_inf = log_softmax(np.where(mask, x, -np.inf))
    np.testing.assert_allclose(softmax(x, where=mask)[rows], minus_inf[rows], rtol=1e-15)
    np.testing.assert_allclose(log_softmax(x, where=mask)[rows], log_minus_inf[rows], rtol=1e-14)
    # The -inf formula makes a row with nothing kept NaN; the mask makes it zeros / -inf.
    assert np.all(np.isnan(minus_inf[~rows]))
    assert np.all(softmax(x, where=mask)[~rows] == 0)


def test_masked_values_are_not_read_and_the_mask_broadcasts():
    x = np.array([[1.0, np.nan, 2.0], [np.inf, 0.0, 0.0]], np.float32)
    mask = np.array([True, False, True])  # shape (n,), broadcast over rows
    y = softmax(x, where=mask)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y[0], [1 / (1 + np.e), 0, np.e / (1 + np.e)], rtol=1e-6)
    assert np.all(np.isnan(y[1]))  # the kept +inf still makes its row NaN (module docstring)
    column = softmax(np.array([[1.0, 2.0], [3.0, 4.0]]), axis=0, where=np.array([[True], [False]]))
    np.testing.assert_array_equal(column, [[1.0, 1.0], [0.0, 0.0]])


@pytest.mark.parametrize("func", [softmax, log_softmax])
def test_bad_masks_are_named(func):
    with pytest.raises(TypeError, match="where must be a boolean array.*got dtype int64"):
        func(np.zeros((2, 3)), where=np.ones((2, 3), np.int64))
    with pytest.raises(ValueError, match=r"where.shape=\(2,\) does not broadcast.*\(2, 3\)"):
        func(np.zeros((2, 3)), where=np.ones(2, bool))
