"""_validation's dtype rule: float16 and bfloat16 are computed in float32 and returned in the
input's dtype, by every function that uses it (forward, VJPs, the bound), against float64."""

from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest

from softmax_grad import log_softmax, log_softmax_vjp, softmax, softmax_vjp, vjp_error_bound
from softmax_grad._validation import as_working

HALVES = [np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)]
U32 = 2.0**-24


def _u(dtype):
    return float(ml_dtypes.finfo(dtype).eps) / 2


def _eta(dtype):
    return float(ml_dtypes.finfo(dtype).smallest_subnormal)


def test_softmax_of_70000_float16_zeros_is_one_over_70000():
    # A float16 sum stops at 65504 (and 2048 + 1 rounds to 2048): 70000 zeros must still give
    # 1/70000 each, rounded once to float16, not 0 or NaN.
    y = softmax(np.zeros(70000, np.float16))
    assert y.dtype == np.float16
    np.testing.assert_array_equal(y, np.full(70000, 1 / 70000).astype(np.float16))
    assert y[0] != 0


@pytest.mark.parametrize("dtype", HALVES)
@pytest.mark.parametrize("n", [1, 7, 300, 5000])
def test_forward_against_float64(dtype, n):
    rng = np.random.default_rng(n)
    x = rng.normal(scale=3, size=(4, n)).astype(dtype)
    x64 = x.astype(np.float64)  # exact: the inputs as given
    y, logp = softmax(x), log_softmax(x)
    assert y.dtype == dtype and logp.dtype == dtype
    y64, logp64 = softmax(x64), log_softmax(x64)
    # float32 arithmetic: exp of the rounded shift (|x - max| u), the row sum (n u) and the
    # division, far below one float16/bfloat16 rounding (u_h |y|) plus half its subnormal.
    spread = float(np.max(x64) - np.min(x64))
    f32 = 4 * (n + spread + 4) * U32
    allowed = (_u(dtype) + f32) * y64 + _eta(dtype) / 2
    assert np.all(np.abs(y.astype(np.float64) - y64) <= allowed)
    allowed_log = _u(dtype) * np.abs(logp64) + 4 * (n + spread + 4) * U32 * (1 + np.abs(logp64))
    assert np.all(np.abs(logp.astype(np.float64) - logp64) <= allowed_log)


def _exact_plain(y, dy):
    fy = [Fraction(v) for v in y.astype(np.float64).tolist()]
    fd = [Fraction(v) for v in dy.astype(np.float64).tolist()]
    dot = sum(a * b for a, b in zip(fy, fd, strict=True))
    return [a * (b - dot) for a, b in zip(fy, fd, strict=True)]


@pytest.mark.parametrize("dtype", HALVES)
@pytest.mark.parametrize("gap", [0.0, 8.0, 20.0])
def test_vjp_within_the_bound_and_the_bound_is_not_vacuous(dtype, gap):
    rng = np.random.default_rng(int(gap))
    worst = 0.0
    for n in (2, 9, 200):
        x = rng.normal(size=n)
        x[0] += gap  # a dominant entry (y_c rounds to 1 in bfloat16 at gap 20)
        y = softmax(x.astype(dtype))
        dy = rng.normal(size=n).astype(dtype)
        exact = _exact_plain(y, dy)
        # the default (plain formula) and accurate=True, each within its own bound
        for accurate, algorithm in ((False, "plain"), (True, "vjp")):
            dx = softmax_vjp(y, dy, accurate=accurate)
            assert dx.dtype == dtype
            err = np.array(
                [float(abs(Fraction(float(c)) - e)) for c, e in zip(dx, exact, strict=True)]
            )
            bound = vjp_error_bound(y, dy, algorithm=algorithm)
            assert np.all(err <= bound), (accurate, np.max(err / bound))
            worst = max(worst, float(np.max(err / bound)))
    # The half rounding u_h |dx| is most of the bound, and one rounding reaches half of it.
    assert worst > 0.2


@pytest.mark.parametrize("dtype", HALVES)
def test_log_softmax_vjp_against_float64(dtype):
    rng = np.random.default_rng(1)
    n = 50
    logp = log_softmax(rng.normal(size=(3, n)).astype(dtype))
    dy = rng.normal(size=(3, n)).astype(dtype)
    dx = log_softmax_vjp(logp, dy)
    assert dx.dtype == dtype
    l64, d64 = logp.astype(np.float64), dy.astype(np.float64)
    ref = log_softmax_vjp(l64, d64)
    # float32: exp within a few u, the sum gamma_n, product and difference one u each; then
    # one rounding to the half dtype.
    f32 = (n + 8) * U32 * (np.abs(d64) + np.exp(l64) * np.sum(np.abs(d64), -1, keepdims=True))
    allowed = _u(dtype) * (np.abs(ref) + f32) + f32 + _eta(dtype) / 2
    assert np.all(np.abs(dx.astype(np.float64) - ref) <= allowed)


def test_mixed_dtypes_promote_like_float32():
    y = softmax(np.array([1.0, 2.0, 3.0], np.float16))
    assert softmax_vjp(y, np.ones(3, np.float32)).dtype == np.float32
    assert softmax_vjp(y, np.ones(3)).dtype == np.float64
    assert softmax_vjp(y, np.ones(3, ml_dtypes.bfloat16)).dtype == np.float32


def test_half_masks_and_bound_dtype_argument():
    x = np.array([[1.0, 2.0, 3.0]], ml_dtypes.bfloat16)
    mask = np.array([True, False, True])
    y = softmax(x, where=mask)
    assert y.dtype == ml_dtypes.bfloat16 and y[0, 1] == 0
    dy = np.ones_like(y)
    b_half = vjp_error_bound(y, dy, dtype=np.float16)
    b32 = vjp_error_bound(y, dy, dtype=np.float32)
    assert np.all(b_half > b32) and np.all(vjp_error_bound(y, dy) >= b32)


def test_as_working_rule():
    h = np.ones(3, np.float16)
    (a, b), back = as_working([h, h], ["a", "b"])
    assert a.dtype == b.dtype == np.float32 and back == np.float16
    (a, b), back = as_working([h, np.ones(3, np.float32)], ["a", "b"])
    assert back is None and b.dtype == np.float32
    (a,), back = as_working([np.arange(3)], ["a"])
    assert a.dtype == np.float64 and back is None
    with pytest.raises(TypeError, match="x must be a real numeric array, got dtype <U1"):
        as_working([np.array(["a"])], ["x"])


@pytest.mark.parametrize(
    "call",
    [
        lambda m: softmax(m),
        lambda m: log_softmax(m),
        lambda m: softmax_vjp(m, np.ones(3)),
        lambda m: softmax_vjp(np.ones(3) / 3, m),
        lambda m: log_softmax_vjp(m, np.ones(3)),
    ],
)
def test_masked_arrays_are_refused_pointing_to_where(call):
    m = np.ma.masked_array([1.0, 2.0, 3.0], mask=[False, True, False])
    with pytest.raises(TypeError, match=r"masked array.*where=~np.ma.getmaskarray"):
        call(m)
    # what the message suggests gives the masked softmax
    y = softmax(np.ma.getdata(m), where=~np.ma.getmaskarray(m))
    np.testing.assert_allclose(y, [1 / (1 + np.e**2), 0, np.e**2 / (1 + np.e**2)], rtol=1e-15)
