"""softmax_vjp and log_softmax_vjp against J^T dy built from finite-difference Jacobians."""

import math
from fractions import Fraction

import ml_dtypes
import mpmath
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

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
    """dx_i = y_i (dy_i - <y, dy>) in exact rational arithmetic from the floating inputs (rows)."""
    out = []
    for yr, dr in zip(y, dy, strict=True):
        fy = [Fraction(v) for v in yr.astype(np.float64).tolist()]
        fd = [Fraction(v) for v in dr.astype(np.float64).tolist()]
        dot = sum(a * b for a, b in zip(fy, fd, strict=True))
        out.append([a * (b - dot) for a, b in zip(fy, fd, strict=True)])
    return out


def _exact_error(computed, exact) -> np.ndarray:
    """|computed - exact| elementwise, the difference taken exactly, then rounded to float64."""
    return np.array(
        [
            [float(abs(Fraction(float(c)) - e)) for c, e in zip(cr, er, strict=True)]
            for cr, er in zip(computed, exact, strict=True)
        ]
    )


def _gamma(k, u):
    return k * u / (1 - k * u)


def test_bound_value_for_a_small_case_by_hand():
    # y = (1/2, 1/2) has a dominant entry (y_c >= 1/2, c = 0), so a = dy_0 = 1: d = (0, -1),
    # s = -1/2, S' = 1/2, |d_i - s| = 1/2, sum(y) = 1 exactly (no drift), n = depth = 2.
    u, eta = 2.0**-53, 2.0**-1074
    y, dy = np.array([0.5, 0.5]), np.array([1.0, 0.0])
    g6 = _gamma(6, u)
    expected = [
        0.5 * (g6 * 0.5 + _gamma(3, u) * 0 + _gamma(2, u) * 0.5) + (2 * 0.5 * (1 + g6) + 1) * eta,
        0.5 * (g6 * 0.5 + _gamma(3, u) * 1 + _gamma(2, u) * 0.5) + (2 * 0.5 * (1 + g6) + 1) * eta,
    ]
    np.testing.assert_allclose(vjp_error_bound(y, dy), np.array(expected) * (1 + 1e-6), rtol=1e-15)
    # plain: gamma_{k+3} S + gamma_2 |dy_i - <y, dy>|, S = 1/2, |dy_i - 1/2| = 1/2; depth 5.
    g8 = _gamma(8, u)
    plain = (0.5 * (g8 * 0.5 + _gamma(2, u) * 0.5) + (2 * 0.5 * (1 + g8) + 1) * eta) * (1 + 1e-6)
    np.testing.assert_allclose(
        vjp_error_bound(y, dy, algorithm="plain", depth=5), [plain, plain], rtol=1e-15
    )
    # No dominant entry (a = 0): the "vjp" bound is the "plain" one.
    y3, dy3 = np.array([0.25, 0.25, 0.5 - 2.0**-20]), np.array([1.0, -2.0, 0.5])
    np.testing.assert_array_equal(
        vjp_error_bound(y3, dy3), vjp_error_bound(y3, dy3, algorithm="plain")
    )
    u32 = 2.0**-24
    g = _gamma(2 + 3, u32)  # quadratic: gamma_{k+3} |y_i| (S + |dy_i|), k = n = 2
    q = vjp_error_bound(
        np.array([0.5, 0.5], np.float32), np.array([1.0, 0.0], np.float32), algorithm="quadratic"
    )
    eta32 = float(np.finfo(np.float32).smallest_subnormal)
    np.testing.assert_allclose(
        q, [(g * 0.5 * 1.5 + 6 * eta32) * (1 + 1e-6), (g * 0.5 * 0.5 + 6 * eta32) * (1 + 1e-6)]
    )


def test_bound_drift_term_is_the_distance_to_the_plain_product():
    # y_0 = 3/4 dominates and the rest, 1/4 / (n - 1) rounded, make sum(y) differ from 1 by
    # rounding only; dy constant: softmax_vjp's form is exactly 0 (dy - a = 0), while the
    # plain product is y_i a (1 - sum y). The bound must be that drift, evaluated exactly.
    n = 2**16
    y = np.full(n, 0.25 / (n - 1))
    y[0] = 0.75
    dy = np.full(n, 3.0)
    drift = float(1 - sum(Fraction(v) for v in y.tolist()))
    assert drift != 0
    np.testing.assert_array_equal(softmax_vjp(y, dy, accurate=True), 0.0)
    bound = vjp_error_bound(y, dy)
    true = np.abs(y * 3.0 * drift)
    assert np.all(bound >= true)
    assert np.all(bound <= true * (1 + 2e-6) + 2 * n * 2.0**-1074)


def _rows(rng, n, dtype):
    """Random rows, a cancellation row, and confident rows (gap 30 and a gap where y_c is 1)."""
    x = rng.normal(scale=3.0, size=(6, n))
    x[2, 0] += 30.0
    x[3, 0] += 60.0 if dtype == np.float32 else 700.0  # y_c rounds to 1, y_j stay nonzero
    x[4, 0] += 12.0
    y = softmax(x.astype(dtype))
    dy = rng.normal(size=(6, n)).astype(dtype)
    # Cancellation: dy nearly constant makes dy_i - <y, dy> small, the hard case for the bound.
    dy[1] = dtype(1) + rng.normal(size=n).astype(dtype) * dtype(1e-3)
    dy[4] = dtype(2) + rng.normal(size=n).astype(dtype) * dtype(1e-4)
    return y, dy


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 2, 7, 64, 1000, 2**16])
def test_bound_holds_for_the_accurate_form_in_any_summation_order(dtype, n):
    # The exact reference in integers (tests/exact.py): the values _exact_vjp's Fractions give,
    # several times quicker on rows of 2^16.
    from tests.exact import exact_error, exact_vjp

    rng = np.random.default_rng(n)
    y, dy = _rows(rng, n, dtype)
    if n == 2**16:
        y, dy = y[1:4], dy[1:4]  # the exact reference of a 2^16 row takes a second
    exact = exact_vjp(y, dy)
    bound = vjp_error_bound(y, dy)
    ratios = []
    # softmax_vjp itself (NumPy's pairwise sum) and the same steps with two other orders
    with np.errstate(under="ignore"):
        a = np.where(np.max(y, axis=-1) >= 0.5, dy[np.arange(len(y)), np.argmax(y, axis=-1)], 0)
        d = dy - a.astype(dtype)[:, None]
        results = [softmax_vjp(y, dy, accurate=True)]
        for order in (slice(None, None, -1), np.random.default_rng(0).permutation(n)):
            prods = (y * d)[:, order]
            s = np.zeros(len(y), dtype)
            for j in range(n) if n < 2000 else ():  # sequential: depth n
                s = s + prods[:, j]
            if n >= 2000:
                s = np.cumsum(prods, axis=-1, dtype=dtype)[:, -1]  # also sequential
            results.append(y * (d - s[:, None]))
    for computed in results:
        err = exact_error(computed, exact)
        assert np.all(err <= bound), np.max(err / bound)
        ratios.append(np.max(err / bound))
    # Not vacuous: the worst error reaches a fair share of the bound (the confident rows,
    # whose error is the drift y_i a (1 - sum y), reach it; others are random-walk sums).
    assert max(ratios) >= (0.5 if n > 1 else 0.0)


def test_bound_is_not_vacuous():
    # An error of 2 gamma_n S (a dot product off by twice its worst case) must exceed the bound.
    rng = np.random.default_rng(0)
    n = 50
    y = softmax(rng.normal(size=n)).astype(np.float32)
    dy = rng.normal(size=n).astype(np.float32)
    u = 2.0**-24
    s = float(np.sum(np.abs(y.astype(float) * dy)))
    for algorithm in ("vjp", "plain"):
        bound = vjp_error_bound(y, dy, algorithm=algorithm)
        assert np.all(bound < np.abs(y) * 4 * n * u * s + 1e-30)
        assert np.all(bound >= np.abs(y.astype(float)) * n * u * s)


def test_bound_on_a_confident_row_is_far_below_the_plain_bound():
    # y_c rounds to 1 in float32 (gap 30): the plain bound at c is about n u S ~ 6e-6; the
    # accurate form's is the drift |y_c a (1 - sum y)| = 99 e^-30 (sum y exceeds 1 by the
    # others' probabilities) plus rounding of that size.
    x = np.zeros(100, np.float32)
    x[0] = 30.0
    y = softmax(x)
    assert y[0] == 1
    dy = np.linspace(-1, 1, 100, dtype=np.float32)
    acc = vjp_error_bound(y, dy)[0]
    plain = vjp_error_bound(y, dy, algorithm="plain")[0]
    drift = 99 * float(np.exp(-30.0))
    assert drift <= acc <= 1.01 * drift
    assert acc < 1e-5 * plain


def test_bound_with_mpmath_reference_for_float32_kernel_sized_rows():
    # float32 VJP in NumPy (pairwise sum) against mpmath at 50 digits from the same inputs,
    # with depth = n and with a depth below n that still covers NumPy's pairwise sum.
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 257))
    x[2, 5] += 25.0  # a confident row
    y = softmax(x).astype(np.float32)
    dy = rng.normal(size=(3, 257)).astype(np.float32)
    computed = softmax_vjp(y, dy, accurate=True)
    bound = vjp_error_bound(y, dy)
    with mpmath.workdps(50):
        for r in range(3):
            dot = mpmath.fsum(
                mpmath.mpf(float(a)) * float(b) for a, b in zip(y[r], dy[r], strict=True)
            )
            for i in range(257):
                exact = mpmath.mpf(float(y[r, i])) * (float(dy[r, i]) - dot)
                assert abs(float(computed[r, i]) - exact) <= bound[r, i]


def test_depth_shrinks_the_bound():
    y = softmax(np.arange(1000.0) / 100)
    dy = np.cos(np.arange(1000.0))
    for algorithm in ("vjp", "plain", "quadratic"):
        full = vjp_error_bound(y, dy, algorithm=algorithm)
        log = vjp_error_bound(y, dy, algorithm=algorithm, depth=10)
        assert np.all(log < full)
        np.testing.assert_array_equal(vjp_error_bound(y, dy, algorithm=algorithm, depth=1000), full)


def test_bound_arguments():
    with pytest.raises(ValueError, match="unknown algorithm='cubic'"):
        vjp_error_bound(np.ones(2), np.ones(2), algorithm="cubic")
    with pytest.raises(ValueError, match="floating dtype"):
        vjp_error_bound(np.ones(2), np.ones(2), dtype=np.int32)
    with pytest.raises(ValueError, match=r"y\.shape=\(2,\) and dy\.shape=\(3,\)"):
        vjp_error_bound(np.ones(2), np.ones(3))
    with pytest.raises(ValueError, match="depth must be >= 0"):
        vjp_error_bound(np.ones(2), np.ones(2), depth=-1)
    with pytest.raises(TypeError, match="depth must be an int"):
        vjp_error_bound(np.ones(2), np.ones(2), depth=2.5)
    assert vjp_error_bound(np.ones(2, np.float32), np.ones(2)).dtype == np.float64
    b32 = vjp_error_bound(np.full(2, 0.5, np.float32), np.ones(2, np.float32))
    b64 = vjp_error_bound(np.full(2, 0.5), np.ones(2))
    assert np.all(b32 > 1e8 * b64)  # float32 default when both inputs are float32


def test_bound_on_another_axis_and_leading_axes():
    rng = np.random.default_rng(5)
    x = rng.normal(scale=4, size=(3, 7, 2))
    x[1, 2, 0] += 30
    y = softmax(x, axis=1)
    dy = rng.normal(size=x.shape)
    moved = vjp_error_bound(np.moveaxis(y, 1, -1), np.moveaxis(dy, 1, -1))
    np.testing.assert_array_equal(vjp_error_bound(y, dy, axis=1), np.moveaxis(moved, -1, 1))


# ---- confident predictions: the accurate form ----------------------------------------------------


def _plain(y, dy, axis=-1):
    """The plain formula y (dy - <y, dy>), written out: the reference for bits and for NaN/inf."""
    with np.errstate(invalid="ignore", over="ignore"):
        return y * (dy - np.sum(y * dy, axis=axis, keepdims=True))


def _vjp_from_logits(x, dy):
    """dx = y (dy - <y, dy>) with y the exact softmax of the logits x, in mpmath, to float."""
    dps = 50 + int(0.4343 * float(np.max(x) - np.min(x))) + 1  # 1 - y_c ~ e^-gap cancels
    with mpmath.workdps(dps):
        xs = [mpmath.mpf(float(v)) for v in x]
        m = max(xs)
        e = [mpmath.exp(v - m) for v in xs]
        z = mpmath.fsum(e)
        y = [v / z for v in e]
        d = [mpmath.mpf(float(v)) for v in dy]
        dot = mpmath.fsum(a * b for a, b in zip(y, d, strict=True))
        return [a * (b - dot) for a, b in zip(y, d, strict=True)]


# Gaps from none to beyond the one where y_c rounds to 1 (17 in float32, 37 in float64), up to
# where the other probabilities are still normal numbers.
GAPS = {np.float32: (0, 5, 10, 17, 20, 30, 60), np.float64: (0, 10, 20, 30, 37, 40, 80, 300, 600)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [2, 10, 1000])
def test_dominant_entry_is_accurate_from_the_logits_at_any_gap(dtype, n):
    # dy_c - dy_j >= 1 makes dx_c = y_c sum_{j != c} y_j (dy_c - dy_j) a sum of terms of one sign
    # (well conditioned), so its relative error measures the algorithm, not the data. The
    # forward pass contributes |x_j - max x| u to y_j (the rounded shift), hence the gap below.
    rng = np.random.default_rng(n)
    u = float(np.finfo(dtype).eps) / 2
    for gap in GAPS[dtype]:
        for _ in range(3):
            x = rng.normal(size=n)
            x[0] = x[1:].max() + gap
            x = x.astype(dtype)
            dy = rng.normal(size=n)
            dy[0], dy[1:] = 1.0, -np.abs(dy[1:])
            dy = dy.astype(dtype)
            y = softmax(x)
            true = _vjp_from_logits(x, dy)[0]
            err = float(
                abs(mpmath.mpf(float(softmax_vjp(y, dy, accurate=True)[0])) - true) / abs(true)
            )
            assert err <= 4 * (n + gap) * u, (gap, err / u)
            np.testing.assert_array_equal(softmax_vjp(y, dy), _plain(y, dy))  # the default
            if y[0] == 1:  # the plain formula fails the same test here (lost its digits)
                plain = float(abs(mpmath.mpf(float(_plain(y, dy)[0])) - true) / abs(true))
                assert plain > 1e3 * 4 * (n + gap) * u


@given(logits(min_dims=2, max_dims=2, max_side=12), st.data())
def test_rows_without_a_dominant_entry_are_bitwise_the_plain_formula(x, data):
    x = x / 8  # mostly rows with max y < 1/2
    y = softmax(x)
    dy = data.draw(hnp.arrays(np.float64, x.shape, elements=st.floats(-1e3, 1e3, allow_nan=False)))
    plain_rows = np.max(y, axis=-1) < 0.5
    got = softmax_vjp(y, dy, accurate=True)
    np.testing.assert_array_equal(got[plain_rows], _plain(y, dy)[plain_rows])


@given(logits(min_dims=1, max_dims=1, max_side=40), st.data())
def test_accurate_form_within_the_bound_of_the_exact_plain_product(x, data):
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    gap = data.draw(st.sampled_from([0.0, 10.0, 25.0, 50.0]))
    x = x.copy()
    x[data.draw(st.integers(0, x.size - 1))] += gap
    y = softmax(x.astype(dtype))
    dy = data.draw(
        hnp.arrays(dtype, x.shape, elements=st.floats(-100, 100, allow_nan=False, width=32))
    )
    err = _exact_error(softmax_vjp(y, dy, accurate=True)[None], _exact_vjp(y[None], dy[None]))[0]
    assert np.all(err <= vjp_error_bound(y, dy))


def test_unnormalised_rows_get_the_plain_formula_bitwise():
    # y is not a probability vector (sums to 1.5), so shifting by dy_c would change the answer
    # by y_i a (1 - sum y); such rows keep the plain formula.
    y = np.array([[0.75, 0.5, 0.25], [0.6, 0.3, 0.1]])
    dy = np.array([[1.0, -2.0, 3.0], [1.0, -2.0, 3.0]])
    dx = softmax_vjp(y, dy, accurate=True)
    np.testing.assert_array_equal(dx[0], _plain(y, dy)[0])
    np.testing.assert_allclose(dx[1], _plain(y, dy)[1], rtol=1e-15, atol=1e-16)


NONFINITE = [np.nan, np.inf, -np.inf]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("where", ["y", "dy"])
@pytest.mark.parametrize("value", NONFINITE)
@pytest.mark.parametrize("position", [0, 1])  # 0 is the dominant entry
def test_non_finite_values_give_the_plain_formulas_answer(dtype, where, value, position):
    # One row with a dominant entry (y_0 = 0.9) and one without, each with one non-finite value.
    y = np.array([[0.9, 0.05, 0.05], [0.3, 0.3, 0.4]], dtype)
    dy = np.array([[1.0, -2.0, 0.5], [1.0, -2.0, 0.5]], dtype)
    target = y if where == "y" else dy
    target[:, position] = value
    with np.errstate(invalid="ignore"):  # the plain formula's inf - inf warns; so does the form
        for accurate in (True, False):
            np.testing.assert_array_equal(softmax_vjp(y, dy, accurate=accurate), _plain(y, dy))


def test_nan_anywhere_in_a_row_makes_the_row_nan_on_a_confident_row():
    y = softmax(np.array([[40.0, 0.0, 1.0], [40.0, 0.0, 1.0]]))
    dy = np.array([[1.0, np.nan, 2.0], [1.0, 3.0, 2.0]])
    dx = softmax_vjp(y, dy, accurate=True)
    assert np.all(np.isnan(dx[0])) and np.all(np.isfinite(dx[1]))


def test_overflow_of_the_shift_falls_back_to_the_plain_formula():
    # dy_1 - a = -1e308 - 1e308 overflows, the plain formula does not: the row is the plain one.
    y = np.array([0.6, 0.4])
    dy = np.array([1e308, -1e308])
    np.testing.assert_array_equal(softmax_vjp(y, dy, accurate=True), _plain(y, dy))
    assert np.all(np.isfinite(softmax_vjp(y, dy, accurate=True)))


def test_overflowing_dot_product_gives_the_plain_formula_even_where_the_form_is_finite():
    # Condition (iii): <y, dy> = (1 + 2u) max overflows, t = 0 does not. The accurate form would
    # give 0 (a finite answer); the rule sends the row to the plain formula: y (max - inf) = -inf.
    big = np.finfo(np.float64).max
    half = np.nextafter(0.5, 1.0)  # y sums to 1 + 2u, within (n + 16) u of 1
    y = np.array([[half, half], [0.75, 0.25]])
    dy = np.array([[big, big], [1.0, -1.0]])
    with np.errstate(over="ignore", invalid="ignore"):
        dx = softmax_vjp(y, dy, accurate=True)
        np.testing.assert_array_equal(dx[0], _plain(y, dy)[0])
    assert np.all(dx[0] == -np.inf)
    np.testing.assert_array_equal(dx[1], [0.375, -0.375])  # the confident row, exact here


def _rule_reference(y, dy):
    """Rows (last axis) by the documented rule, written from its four conditions: the accurate
    form y ((dy - a) + xi), a = dy_c, xi = sum_j y_j (a - dy_j), where it applies, else plain."""
    u = float(np.finfo(y.dtype).eps) / 2
    out = _plain(y, dy)
    for r in range(y.shape[0]):
        yr, dr = y[r], dy[r]
        c = int(np.argmax(yr))
        with np.errstate(invalid="ignore", over="ignore"):
            total = math.fsum(yr.astype(np.float64).tolist()) if np.all(np.isfinite(yr)) else np.nan
            xi = np.sum(yr * (dr[c] - dr))
            dot = np.sum(yr * dr)
            if (
                yr[c] >= 0.5
                and abs(1 - total) <= (yr.size + 16) * u
                and np.isfinite(dot)
                and np.isfinite(xi)
            ):
                out[r] = yr * ((dr - dr[c]) + xi)
    return out


@given(st.data())
def test_each_row_follows_the_documented_rule(data):
    # Rows of every kind: confident or not, normalised or not, with huge, infinite or NaN dy.
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    rows, n = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 7))
    x = data.draw(hnp.arrays(np.float64, (rows, n), elements=st.floats(-40, 40)))
    y = softmax(x).astype(dtype)
    scale = data.draw(hnp.arrays(np.float64, (rows, 1), elements=st.sampled_from([1.0, 1.5])))
    y = (y * scale).astype(dtype)  # some rows off the simplex
    big = float(np.finfo(dtype).max)
    values = st.one_of(
        st.floats(-10, 10),
        st.sampled_from([big, -big, big / 2, np.inf, -np.inf, np.nan]),
    )
    dy = data.draw(hnp.arrays(dtype, (rows, n), elements=values))
    with np.errstate(invalid="ignore", over="ignore"):
        np.testing.assert_array_equal(softmax_vjp(y, dy, accurate=True), _rule_reference(y, dy))
        np.testing.assert_array_equal(softmax_vjp(y, dy), _plain(y, dy))  # the default


def test_accurate_false_is_the_plain_formula_everywhere():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(4, 9))
    x[:2, 0] += 40  # two confident rows, where the two forms differ
    y, dy = softmax(x), rng.normal(size=(4, 9))
    np.testing.assert_array_equal(softmax_vjp(y, dy, accurate=False), _plain(y, dy))
    np.testing.assert_array_equal(softmax_vjp(y, dy), _plain(y, dy))  # the default
    assert np.any(softmax_vjp(y, dy, accurate=True) != _plain(y, dy))
    # along another axis, and with a mask: the plain formula of the kept entries
    np.testing.assert_array_equal(
        softmax_vjp(y.T, dy.T, axis=0, accurate=False), _plain(y.T, dy.T, axis=0)
    )
    mask = rng.random((4, 9)) < 0.7
    ym, dym = np.where(mask, y, 0), np.where(mask, dy, 0)
    np.testing.assert_array_equal(
        softmax_vjp(y, dy, where=mask, accurate=False), np.where(mask, _plain(ym, dym), 0)
    )


def test_accurate_false_loses_the_dominant_entry_and_true_keeps_it():
    # Gap 40 in float64: y_c rounds to 1, so the plain dx_c = 1 * (dy_c - <y, dy>) keeps only
    # the rounding of <y, dy>; the accurate form matches the mpmath reference from the logits.
    x = np.array([40.0, 0.0, -1.0, 0.5])
    dy = np.array([1.0, -1.0, -2.0, -0.5])
    y = softmax(x)
    true = _vjp_from_logits(x, dy)[0]

    def rel(v):
        return float(abs(mpmath.mpf(float(v)) - true) / abs(true))

    assert rel(softmax_vjp(y, dy, accurate=True)[0]) <= 4 * (4 + 40) * 2.0**-53
    assert rel(softmax_vjp(y, dy, accurate=False)[0]) > 1e-3
    assert rel(softmax_vjp(y, dy)[0]) > 1e-3  # the default is the plain formula


@given(logits(min_dims=2, max_dims=3, max_side=9), st.data())
def test_default_is_the_plain_formula_bit_for_bit(x, data):
    # Any rows (confident ones included: a large gap at a random entry), any axis, float32,
    # float64 and the half dtypes (computed in float32, rounded once): the default result is
    # y * (dy - sum(y * dy)) written out here, bit for bit.
    dtype = data.draw(st.sampled_from([np.float32, np.float64, np.float16, ml_dtypes.bfloat16]))
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    gap = data.draw(st.sampled_from([0.0, 20.0, 45.0]))
    x = x.copy()
    x.flat[data.draw(st.integers(0, x.size - 1))] += gap
    y = softmax(x, axis=axis).astype(dtype)
    dy = data.draw(
        hnp.arrays(np.float64, x.shape, elements=st.floats(-100, 100, allow_nan=False))
    ).astype(dtype)
    work = np.float64 if dtype == np.float64 else np.float32
    expected = _plain(y.astype(work), dy.astype(work), axis=axis).astype(dtype)
    got = softmax_vjp(y, dy, axis=axis)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(softmax_vjp(y, dy, axis=axis, accurate=False), expected)


def test_accurate_must_be_a_bool():
    with pytest.raises(TypeError, match="accurate must be True or False, got 'no'"):
        softmax_vjp(np.ones(2) / 2, np.ones(2), accurate="no")
    with pytest.raises(TypeError, match="accurate must be True or False, got 1"):
        softmax_vjp(np.ones(2) / 2, np.ones(2), accurate=1)


def test_complex_step_through_the_accurate_form():
    # Complex y and dy (complex-step differentiation of a loss built on the VJP): the row's
    # choice of c uses the real part, and the identity stays analytic.
    rng = np.random.default_rng(4)
    x = rng.normal(size=6)
    x[2] += 30
    dy = rng.normal(size=6)
    v = rng.normal(size=6)
    h = 1e-20

    def vjp(y):
        return softmax_vjp(y, dy, accurate=True)

    got = np.imag(vjp(softmax(x + 1j * h * v))) / h
    fd = (vjp(softmax(x + 1e-6 * v)) - vjp(softmax(x - 1e-6 * v))) / 2e-6
    np.testing.assert_allclose(got, fd, rtol=1e-5, atol=1e-18)


# ---- masks (where=) ------------------------------------------------------------------------------


def _masked_case():
    shapes = hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=7)
    return shapes.flatmap(
        lambda s: st.tuples(
            hnp.arrays(np.float64, s, elements=st.floats(-20, 20)),
            hnp.arrays(np.float64, s, elements=st.floats(-5, 5)),
            hnp.arrays(np.bool_, s),
        )
    )


@given(_masked_case())
def test_masked_vjps_are_the_vjps_of_the_kept_entries(case):
    # Reference: compress each row to its kept entries, take the unmasked VJP there, scatter
    # back, zeros elsewhere; and the finite-difference VJP of the masked forward pass.
    x, dy, mask = case
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y, logp = softmax(x, where=mask), log_softmax(x, where=mask)
        dx = softmax_vjp(y, dy, where=mask)
        dxl = log_softmax_vjp(logp, dy, where=mask)
    for r in range(x.shape[0]):
        kept = mask[r]
        assert np.all(dx[r, ~kept] == 0) and np.all(dxl[r, ~kept] == 0)
        if kept.any():
            sub = x[r, kept]
            np.testing.assert_allclose(
                dx[r, kept], softmax_vjp(softmax(sub), dy[r, kept]), rtol=1e-13, atol=1e-15
            )
            np.testing.assert_allclose(
                dxl[r, kept],
                log_softmax_vjp(log_softmax(sub), dy[r, kept]),
                rtol=1e-13,
                atol=1e-14,
            )
    fd = _fd_vjp(lambda z, axis: softmax(z, axis=axis, where=mask), x, dy, -1)
    np.testing.assert_allclose(dx, fd, atol=1e-7)


def test_masked_entries_are_not_read_in_the_backward():
    y = np.array([[0.5, np.nan, 0.5], [np.inf, 0.25, 0.75]])
    dy = np.array([[1.0, np.inf, 0.0], [np.nan, 1.0, 2.0]])
    mask = np.array([[True, False, True], [False, True, True]])
    np.testing.assert_array_equal(
        softmax_vjp(y, dy, where=mask), [[0.25, 0, -0.25], [0, -0.1875, 0.1875]]
    )
    nothing = np.zeros((2, 3), bool)
    np.testing.assert_array_equal(softmax_vjp(y, dy, where=nothing), 0)
    np.testing.assert_array_equal(log_softmax_vjp(np.full((2, 3), -np.inf), dy, where=nothing), 0)


@pytest.mark.parametrize("func", [softmax_vjp, log_softmax_vjp])
def test_bad_masks_are_named_in_the_backward(func):
    with pytest.raises(TypeError, match="where must be a boolean array"):
        func(np.zeros((2, 3)), np.zeros((2, 3)), where=np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"where.shape=\(3, 2\) does not broadcast"):
        func(np.zeros((2, 3)), np.zeros((2, 3)), where=np.ones((3, 2), bool))
