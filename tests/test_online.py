"""softmax_grad.online: the (max, sum) state, its merge, and the two-pass softmax built on it.

References are the definition in long double (``np.longdouble``), and SciPy's logsumexp as an
outside implementation."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.special import logsumexp

import softmax_grad as sg
from softmax_grad import online

LONG = np.longdouble


def lse_reference(x):
    x = np.asarray(x, LONG)
    m = np.max(x, axis=-1, keepdims=True)
    return (m + np.log(np.sum(np.exp(x - m), axis=-1, keepdims=True)))[..., 0]


def softmax_reference(x):
    x = np.asarray(x, LONG)
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


finite = st.floats(-80, 80, allow_nan=False, allow_infinity=False)
rows = arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 60)), elements=finite)


@settings(max_examples=200, deadline=None)
@given(rows, st.integers(1, 70))
def test_online_logsumexp_is_the_definition_for_any_block(x, block):
    got = online.online_logsumexp(x, block=block)
    want = lse_reference(x)
    # each merge rounds a few times: allow 8 ulps of the result's magnitude plus one of 1
    tol = 8 * np.finfo(np.float64).eps * (np.abs(want) + 1)
    assert np.all(np.abs(got - want) <= tol), np.max(np.abs(got - want) / tol)


@settings(max_examples=200, deadline=None)
@given(rows, st.integers(1, 70))
def test_online_softmax_is_the_definition_for_any_block(x, block):
    got = online.online_softmax(x, block=block)
    want = softmax_reference(x)
    # exp(x - m) inherits the rounding of x - m (a relative error up to |x - m| u), and the p
    # merges of a left-to-right sum of block sums add up to p roundings of Z
    spread = np.abs(x - np.max(x, axis=-1, keepdims=True))
    p = -(-x.shape[-1] // block)
    tol = (16 + spread + 2 * p) * np.finfo(np.float64).eps * want.astype(float)
    assert np.all(np.abs(got - want) <= tol), np.max(np.abs(got - want) / tol)


@settings(max_examples=200, deadline=None)
@given(rows, st.data())
def test_merge_is_the_state_of_the_concatenation_and_associative(x, data):
    n = x.shape[-1]
    i = data.draw(st.integers(0, n))
    j = data.draw(st.integers(i, n))
    a, b, c = (online.partial_logsumexp(p) for p in (x[:, :i], x[:, i:j], x[:, j:]))
    left = online.merge_logsumexp(online.merge_logsumexp(a, b), c)
    right = online.merge_logsumexp(a, online.merge_logsumexp(b, c))
    whole = online.partial_logsumexp(x)
    for state in (left, right):
        np.testing.assert_array_equal(state[0], whole[0])  # the max is exact
        np.testing.assert_allclose(state[1], whole[1], rtol=1e-14)
    np.testing.assert_allclose(
        online.finish_logsumexp(left), logsumexp(x, axis=-1), rtol=1e-14, atol=1e-14
    )


def test_the_empty_block_is_the_identity_even_far_from_zero():
    x = np.array([[-1000.0, -1001.0], [1000.0, 999.0]])
    state = online.partial_logsumexp(x)
    empty = online.partial_logsumexp(x[:, :0])
    np.testing.assert_array_equal(empty[0], [-np.inf, -np.inf])
    np.testing.assert_array_equal(empty[1], [0.0, 0.0])
    for merged in (online.merge_logsumexp(empty, state), online.merge_logsumexp(state, empty)):
        np.testing.assert_array_equal(merged[0], state[0])
        np.testing.assert_array_equal(merged[1], state[1])  # no 0 * inf = NaN


def test_non_finite_logits_follow_the_forward_convention():
    x = np.array(
        [
            [0.0, 1.0, np.inf],
            [-np.inf, -np.inf, -np.inf],
            [np.nan, 1.0, 2.0],
            [-1000.0, -1001.0, -np.inf],
        ]
    )
    lse = online.online_logsumexp(x, block=1)
    assert lse[0] == np.inf and lse[1] == -np.inf and np.isnan(lse[2])
    np.testing.assert_allclose(lse[3], logsumexp(x[3]), rtol=1e-15)
    for block in (1, 2, 3):
        y = online.online_softmax(x, block=block)
        np.testing.assert_array_equal(np.isnan(y), np.isnan(sg.softmax(x)))
        assert y[3, 2] == 0.0


def test_where_gives_zeros_on_a_row_with_nothing_kept():
    x = np.array([[1.0, 2.0, 3.0], [np.nan, np.inf, 0.0]])
    keep = np.array([[True, False, True], [False, False, False]])
    y = online.online_softmax(x, where=keep, block=2)
    np.testing.assert_array_equal(y[1], [0.0, 0.0, 0.0])
    want = softmax_reference([[1.0, 3.0]])[0]
    np.testing.assert_allclose(y[0, [0, 2]], want.astype(float), rtol=1e-15)
    assert y[0, 1] == 0.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_axis_and_half_precision(dtype):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 50, 4)).astype(dtype)
    got = online.online_logsumexp(x, axis=1, block=16)
    assert got.dtype == dtype and got.shape == (3, 4)
    want = lse_reference(np.moveaxis(x, 1, -1))
    rtol = 8 * np.finfo(dtype).eps
    np.testing.assert_allclose(got, want.astype(float), rtol=rtol)
    y = online.online_softmax(x, axis=1, block=16)
    assert y.dtype == dtype and y.shape == x.shape
    f16 = online.online_softmax(x.astype(np.float16), axis=1)
    assert f16.dtype == np.float16


@pytest.mark.parametrize("block", [0, -1, 1.5, True])
def test_bad_block_is_rejected_by_name(block):
    with pytest.raises(ValueError, match="block"):
        online.online_logsumexp(np.zeros(3), block=block)
