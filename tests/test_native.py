"""softmax_grad.native (the C kernels) against references computed from the definitions.

Every ISA path usable on this CPU runs every test (AVX-512 only where the CPU has it). References
are the library's NumPy functions evaluated in float64 (float32 inputs are upcast exactly), or in
long double where float64 itself would be the less accurate side, mpmath from the logits, and an
independent model of the documented summation order (``ordered_sum``). Tolerances are derived,
not tuned; see ``vjp_bound``. Bits must not depend on the address, the thread count or the ISA.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import softmax_grad as sg
from softmax_grad import native

ISAS = native.isas()
# native.softmax_vjp's accurate= keyword: the plain form (the default) and the accurate one.
FORMS = (False, True)
DTYPES = (np.float32, np.float64)
BF16 = ml_dtypes.bfloat16
HALVES = (np.float16, BF16)
F64 = np.float64
LONG = np.longdouble
# Long double is 80-bit extended on x86-64 Linux; elsewhere it may equal float64, and then the
# softmax references below are float64 (the tolerances stay valid, just less tight in margin).
LONG_IS_WIDER = np.finfo(LONG).eps < np.finfo(F64).eps

# Elements per SIMD vector; the kernels unroll 4 vectors, then single vectors, then one masked
# tail. n from 1 to 5W+1 walks through every combination of those three loops. The scalar
# path unrolls its dot product by 4.
WIDTH = {
    "scalar": {np.float32: 4, np.float64: 4},
    "avx2": {np.float32: 8, np.float64: 4},
    "avx512": {np.float32: 16, np.float64: 8},
}
LARGE_N = (257, 1000, 4099, 32003)
# Calls moving more bytes than this take the streaming kernels (SG_STREAM_BYTES, csrc/dispatch.c).
STREAM_BYTES = 16 << 20
REAL_THREAD_THRESHOLD = native.THREAD_THRESHOLD_BYTES


@pytest.fixture(autouse=True, scope="module")
def threads_as_asked():
    """threads=k means at most k; small calls use fewer (see default_threads). The tests' calls
    are small, so lift that limit here and threads=2 really starts a second thread."""
    native.THREAD_THRESHOLD_BYTES = 1
    yield
    native.THREAD_THRESHOLD_BYTES = REAL_THREAD_THRESHOLD


def _gamma(k, dtype):
    u = float(np.finfo(dtype).eps) / 2
    return k * u / (1 - k * u)


def confident_shift(y, dy, u=None):
    """Per row, a = dy_c where the row's largest entry y_c (first one) is >= 1/2, the row sums
    to 1 within (n + 16) u (u: the unit roundoff of y's dtype, or as given) and its dot product
    and shifted sum t = sum_j y_j (a - dy_j) are finite (the native kernel's accurate form), else
    0 (the plain formula); float64, shape (..., 1), and whether the row is confident. The sums
    here are float64 ones, not the kernel's: rows within a rounding of a threshold may differ."""
    if u is None:
        u = float(np.finfo(np.asarray(y).dtype).eps) / 2
    y64, dy64 = np.asarray(y, F64), np.asarray(dy, F64)
    n = y64.shape[-1]
    with np.errstate(invalid="ignore", over="ignore"):
        dot = np.sum(y64 * dy64, axis=-1, keepdims=True)
        m = np.max(np.where(np.isnan(y64), -np.inf, y64), axis=-1, keepdims=True)
        c = np.argmax(np.where(np.isnan(y64), -np.inf, y64), axis=-1)[..., None]
        dyc = np.take_along_axis(dy64, c, axis=-1)
        t = np.sum(y64 * (dyc - dy64), axis=-1, keepdims=True)
        normalised = np.abs(1 - np.sum(y64, axis=-1, keepdims=True)) <= (n + 16) * u
    confident = (m >= 0.5) & normalised & np.isfinite(dot) & np.isfinite(t)
    confident &= np.all(np.isfinite(y64), axis=-1, keepdims=True)
    a = np.where(confident, dyc, 0.0)
    return a, confident


def vjp_bound(y, dy, dtype, u=None, accurate=False) -> np.ndarray:
    """What the native VJP in ``dtype`` may differ from the exact plain formula of the same
    (y, dy), derived here for its two forms (see native.softmax_vjp), with the summation depth
    k = native.summation_depth(n) in place of n:

    plain rows: the library's bound, sg.vjp_error_bound, with gamma_{k+2} for gamma_{n+2};
    confident rows: dx_i = y_i ((dy_i - a) + t), t = sum_j y_j (a - dy_j): each term of t has
    two roundings (the subtraction, the product) and k - 1 additions, so |t^ - t| <=
    gamma_{k+1} T with T = sum_j |y_j (a - dy_j)|; then subtraction, addition and product:
    |y_i| (gamma_3 |dy_i - a| + gamma_{k+4} T), plus |y_i a (sum_j y_j - 1)|, by which the two
    forms differ exactly off the simplex (y here may be any array). Underflow: (n + 4) eta.
    u: the unit roundoff of the probability-row test (a half row's, for one computed in float32).
    accurate: the kernel's keyword (False: every row is plain).
    """
    y64, dy64 = np.asarray(y, F64), np.asarray(dy, F64)
    n = y64.shape[-1]
    k = native.summation_depth(n, dtype)
    eta = float(np.finfo(dtype).smallest_subnormal)
    a, confident = confident_shift(y64, dy64, u=float(np.finfo(dtype).eps) / 2 if u is None else u)
    confident &= accurate
    with np.errstate(invalid="ignore", over="ignore"):
        s = np.sum(np.abs(y64 * dy64), axis=-1, keepdims=True)
        d = np.abs(dy64 - np.sum(y64 * dy64, axis=-1, keepdims=True))
        plain = np.abs(y64) * (_gamma(k + 2, dtype) * s + _gamma(2, dtype) * d)
        big_t = np.sum(np.abs(y64 * (a - dy64)), axis=-1, keepdims=True)
        # sum_j y_j - 1 in long double: float64 would round it to 0 or a whole ulp of 1
        off = np.abs(y64 * a) * np.abs(np.sum(y64.astype(LONG), axis=-1, keepdims=True) - 1)
        accurate = np.abs(y64) * (
            _gamma(3, dtype) * np.abs(dy64 - a) + _gamma(k + 4, dtype) * big_t
        ) + off * (1 + 1e-12)
        bound = np.where(confident, accurate, plain) + (n + 4) * eta
    return bound.astype(F64) * (1 + 1e-6)


def quadratic_bound(y, dy, dtype) -> np.ndarray:
    """The library's rounding-error bound of the O(n^2) algorithm in ``dtype``."""
    return sg.vjp_error_bound(y, dy, dtype=dtype, algorithm="quadratic")


def assert_within(actual, expected, bound, msg=""):
    """|actual - expected| <= bound elementwise (NaN/inf positions must match exactly)."""
    actual = np.asarray(actual, F64)
    expected = np.asarray(expected, F64)
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), err_msg=f"NaN {msg}")
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(actual[~finite], expected[~finite], err_msg=f"inf {msg}")
    with np.errstate(invalid="ignore"):
        err = np.abs(actual - expected)[finite]
    excess = err - np.broadcast_to(bound, actual.shape)[finite]
    if err.size and excess.max() > 0:
        k = int(np.argmax(excess))
        raise AssertionError(
            f"{msg}: error {err[k]:.3e} exceeds bound {err[k] - excess[k]:.3e} "
            f"({int(np.sum(excess > 0))} of {err.size} elements)"
        )


def numpy_vjp_same_dtype(y, dy, accurate=False):
    """The library's NumPy formula in the inputs' own dtype, in the form ``accurate`` selects:
    the spec for NaN/inf placement."""
    with np.errstate(invalid="ignore", over="ignore"):
        return sg.softmax_vjp(y, dy, accurate=accurate)


def plain_formula(y, dy):
    """The definition y * (dy - <y, dy>) along the last axis, written out: no rewrite."""
    return y * (dy - np.sum(y * dy, axis=-1, keepdims=True))


def vjp_reference(y, dy):
    """The plain formula in arithmetic wider than the tested dtype's (float64 for float32
    inputs, long double for float64 ones, both upcast exactly): its own error is negligible
    against vjp_bound, even where the formula cancels."""
    wide = F64 if np.asarray(y).dtype == np.float32 else LONG
    return plain_formula(np.asarray(y, wide), np.asarray(dy, wide)).astype(F64)


def softmax_reference(x):
    """The library's NumPy softmax in long double (more accurate than any float64 result)."""
    return sg.softmax(np.asarray(x, LONG if LONG_IS_WIDER else F64)).astype(F64)


# rtol from the issue; atol: results below the smallest normal are subnormal in the output dtype
# and carry an absolute, not relative, error of a few half-ulps of the smallest subnormal.
SOFTMAX_RTOL = {np.float32: 3e-6, np.float64: 1e-13}
SOFTMAX_ATOL = {np.float32: 2.0**-147, np.float64: 2.0**-1072}


def assert_softmax_close(actual, x, dtype, msg=""):
    expected = softmax_reference(x)
    np.testing.assert_allclose(
        np.asarray(actual, F64),
        expected,
        rtol=SOFTMAX_RTOL[dtype],
        atol=SOFTMAX_ATOL[dtype],
        equal_nan=True,
        err_msg=msg,
    )


def vjp_inputs(rng, shape, dtype, scale=3.0):
    """y = softmax of random logits (a real probability vector) and a random dy, in dtype."""
    y = sg.softmax(rng.normal(scale=scale, size=shape)).astype(dtype)
    dy = rng.normal(size=shape).astype(dtype)
    return y, dy


def tail_lengths(isa, dtype):
    return list(range(1, 5 * WIDTH[isa][dtype] + 2))


# ---- which paths exist ---------------------------------------------------------------------------


def test_isas_order_and_names():
    assert ISAS[0] == "scalar"
    assert set(ISAS) <= set(native.ALL_ISAS)
    assert list(ISAS) == [name for name in native.ALL_ISAS if name in ISAS]  # best last


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/cpuinfo")
def test_isas_agree_with_proc_cpuinfo():
    # The kernel clears a flag when it does not enable the register state, so /proc/cpuinfo is
    # an independent witness of what cpuid + xgetbv should have found.
    with open("/proc/cpuinfo") as f:
        flags = next(
            (
                line.split(":", 1)[1].split()
                for line in f
                if line.startswith(("flags", "Features"))  # x86, AArch64
            ),
            [],
        )
    expected = ["scalar"]
    if "asimd" in flags:  # AArch64's NEON
        expected.append("neon")
    if "avx2" in flags and "fma" in flags and "f16c" in flags:  # f16c: float16 conversions
        expected.append("avx2")
        if "avx512f" in flags:
            expected.append("avx512")
    assert list(ISAS) == expected


# ---- softmax VJP -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("accurate", FORMS)
def test_vjp_every_tail_length(isa, dtype, accurate):
    vjp = functools.partial(native.softmax_vjp, accurate=accurate)
    rng = np.random.default_rng(1)
    for n in tail_lengths(isa, dtype):
        y, dy = vjp_inputs(rng, (3, n), dtype)
        out = vjp(y, dy, isa=isa, threads=1)
        assert out.dtype == dtype and out.shape == (3, n)
        assert_within(
            out, vjp_reference(y, dy), vjp_bound(y, dy, dtype, accurate=accurate), f"{isa} n={n}"
        )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("n", LARGE_N)
@pytest.mark.parametrize("accurate", FORMS)
def test_vjp_large_rows(isa, dtype, n, accurate):
    vjp = functools.partial(native.softmax_vjp, accurate=accurate)
    rng = np.random.default_rng(n)
    y, dy = vjp_inputs(rng, (3, n), dtype)
    out = vjp(y, dy, isa=isa, threads=2)
    assert_within(
        out, vjp_reference(y, dy), vjp_bound(y, dy, dtype, accurate=accurate), f"{isa} n={n}"
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("accurate", FORMS)
def test_vjp_streaming_variant_matches_cache_variant(isa, dtype, accurate):
    vjp = functools.partial(native.softmax_vjp, accurate=accurate)
    # Calls moving more than STREAM_BYTES take the row-pipelined kernel (SG_STREAM_BYTES);
    # smaller calls take the row-by-row one. Row blocks below the threshold must give the very
    # same bits, and the big call must still satisfy the error bound.
    n = 4099  # odd: masked tails in both variants
    itemsize = np.dtype(dtype).itemsize
    rows = STREAM_BYTES // (3 * itemsize * n) + 3
    rng = np.random.default_rng(10)
    y, dy = vjp_inputs(rng, (rows, n), dtype)
    assert 3 * y.nbytes > STREAM_BYTES
    big = vjp(y, dy, isa=isa, threads=1)
    parts = np.concatenate(
        [vjp(y[k : k + 64], dy[k : k + 64], isa=isa) for k in range(0, rows, 64)]
    )
    np.testing.assert_array_equal(big, parts)
    np.testing.assert_array_equal(vjp(y, dy, isa=isa, threads=2), big)
    sample = slice(0, rows, 97)
    assert_within(
        big[sample],
        vjp_reference(y[sample], dy[sample]),
        vjp_bound(y, dy, dtype, accurate=accurate)[sample],
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa", ISAS)
def test_vjp_unnormalised_inputs_and_leading_axes(isa, dtype):
    # The kernel is the formula for any y, not only probabilities; 3 leading axes.
    rng = np.random.default_rng(2)
    y = rng.normal(scale=10, size=(2, 3, 4, 37)).astype(dtype)
    dy = rng.normal(scale=10, size=(2, 3, 4, 37)).astype(dtype)
    out = native.softmax_vjp(y, dy, isa=isa)
    assert out.shape == y.shape
    assert_within(out, vjp_reference(y, dy), vjp_bound(y, dy, dtype), isa)


# ---- forward softmax ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa", ISAS)
def test_softmax_every_tail_length(isa, dtype):
    rng = np.random.default_rng(3)
    for n in tail_lengths(isa, dtype):
        # scale 40: many entries far below the maximum, down into the subnormal range
        x = rng.normal(scale=40, size=(3, n)).astype(dtype)
        out = native.softmax(x, isa=isa, threads=1)
        assert out.dtype == dtype
        assert_softmax_close(out, x, dtype, f"{isa} n={n}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("n", LARGE_N)
def test_softmax_large_rows(isa, dtype, n):
    rng = np.random.default_rng(n)
    x = rng.normal(scale=5, size=(2, n)).astype(dtype)
    assert_softmax_close(native.softmax(x, isa=isa, threads=2), x, dtype, f"{isa} n={n}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa", ISAS)
def test_softmax_exp_accuracy_over_the_whole_range(isa, dtype):
    # Row = [0, -t] for t from 0 to past the underflow threshold: y_1 = exp(-t) / (1 + exp(-t))
    # sweeps every exponent the vectorized exp can produce, normal and subnormal.
    limit = 110.0 if dtype == np.float32 else 750.0
    t = np.linspace(0.0, limit, 20001).astype(dtype)
    x = np.stack([np.zeros_like(t), -t], axis=-1)
    assert_softmax_close(native.softmax(x, isa=isa), x, dtype, isa)
    # and the same with the maximum elsewhere and large magnitudes, where x - m rounds
    x2 = np.stack([np.full_like(t, 1000), 1000 - t], axis=-1).astype(dtype)
    assert_softmax_close(native.softmax(x2, isa=isa), x2, dtype, isa)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa", ISAS)
def test_softmax_huge_and_tiny_logits(isa, dtype):
    big = float(np.finfo(dtype).max)
    x = np.array(
        [
            [big, -big, 0.0, 1.0],  # x - m overflows to -inf: probability exactly 0
            [1e30, 1e30, -1e30, 0.0],
            [-big, -big, -big, -big],  # all equal: exactly uniform
            [1e-40 if dtype == np.float32 else 1e-310, 0.0, -1e-30, 5e-45],  # subnormal logits
            [88.0, 87.0, -50.0, 0.0],
            [700.0 if dtype == np.float64 else 80.0, 0.0, -700.0, 3.0],
        ],
        dtype=dtype,
    )
    out = native.softmax(x, isa=isa)
    assert_softmax_close(out, x, dtype, isa)
    np.testing.assert_array_equal(out[0], [1.0, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(out[2], [0.25, 0.25, 0.25, 0.25])


# ---- NaN and infinities: exactly where the NumPy formula puts them -------------------------------

NAN, INF = np.nan, np.inf
SPECIAL_LOGITS = [
    [0.0, 1.0, 2.0, 3.0, 4.0],
    [NAN, 1.0, 2.0, 3.0, 4.0],
    [0.0, 1.0, 2.0, 3.0, NAN],
    [INF, 1.0, 2.0, 3.0, 4.0],  # +inf: no defined softmax, NaN throughout
    [INF, INF, -INF, 0.0, 4.0],
    [-INF, 1.0, -INF, 3.0, 4.0],  # masking: exactly 0
    [-INF, -INF, -INF, -INF, -INF],  # no defined softmax: NaN
    [INF, NAN, -INF, 0.0, 0.0],
    [-INF, NAN, -INF, -INF, -INF],
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa", ISAS)
def test_softmax_special_values_match_numpy_formula(isa, dtype):
    for width in (5, 21, 70):  # the specials land in the vector body and in the masked tail
        x = np.zeros((len(SPECIAL_LOGITS), width), dtype)
        x[:, -5:] = SPECIAL_LOGITS
        out = native.softmax(x, isa=isa)
        expected = sg.softmax(x)  # the NumPy formula, same dtype
        np.testing.assert_array_equal(np.isnan(out), np.isnan(expected), err_msg=f"w={width}")
        assert_softmax_close(out, x, dtype, f"{isa} w={width}")


SPECIAL_VJP = [
    # (y row, dy row)
    ([0.1, 0.2, 0.3, 0.4], [1.0, -1.0, 2.0, 0.5]),
    ([0.1, NAN, 0.3, 0.4], [1.0, -1.0, 2.0, 0.5]),
    ([0.1, 0.2, 0.3, 0.4], [1.0, -1.0, NAN, 0.5]),
    ([0.1, 0.2, 0.3, INF], [1.0, -1.0, 2.0, 0.5]),  # dot = inf
    ([0.1, 0.2, 0.3, INF], [1.0, -1.0, 2.0, 0.0]),  # inf * 0 = NaN
    ([0.0, 0.2, 0.3, 0.5], [1.0, -1.0, 2.0, INF]),  # dy - inf; 0 * -inf = NaN
    ([0.0, 0.2, 0.3, 0.5], [INF, -1.0, 2.0, 0.5]),  # 0 * inf in the dot = NaN
    ([0.1, 0.2, 0.3, 0.4], [-INF, 1.0, INF, 0.5]),  # inf - inf = NaN
    ([-INF, 0.2, 0.3, 0.4], [1.0, -1.0, 2.0, 0.5]),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("accurate", FORMS)
def test_vjp_special_values_match_numpy_formula(isa, dtype, accurate):
    vjp = functools.partial(native.softmax_vjp, accurate=accurate)
    for width in (4, 19, 67):
        y = np.full((len(SPECIAL_VJP), width), 0.01, dtype)
        dy = np.full_like(y, 0.5)
        y[:, -4:] = [row[0] for row in SPECIAL_VJP]
        dy[:, -4:] = [row[1] for row in SPECIAL_VJP]
        out = vjp(y, dy, isa=isa)
        expected = numpy_vjp_same_dtype(y, dy, accurate=accurate)
        np.testing.assert_array_equal(np.isnan(out), np.isnan(expected), err_msg=f"w={width}")
        # non-finite values equal, finite ones within the bound of both computations
        bound = vjp_bound(y, dy, dtype, accurate=accurate) * 2
        assert_within(out, expected, bound, f"{isa} w={width}")


# ---- the O(n^2) algorithm ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa", ISAS)
def test_quadratic_every_tail_length_and_large(isa, dtype):
    rng = np.random.default_rng(4)
    for n in [*tail_lengths(isa, dtype), 257, 1000]:
        y, dy = vjp_inputs(rng, (2, n), dtype)
        out = native.jacobian_product_quadratic(y, dy, isa=isa)
        assert out.dtype == dtype
        bound = quadratic_bound(y, dy, dtype) + vjp_bound(y, dy, F64)
        assert_within(out, vjp_reference(y, dy), bound, f"{isa} n={n}")


@pytest.mark.parametrize("isa", ISAS)
def test_quadratic_nan_spreads_through_the_row(isa):
    y = np.full((2, 9), 0.1)
    dy = np.ones_like(y)
    dy[1, 4] = np.nan
    out = native.jacobian_product_quadratic(y, dy, isa=isa)
    assert np.all(np.isfinite(out[0])) and np.all(np.isnan(out[1]))


# ---- the bandwidth floor -----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa", ISAS)
def test_stream_add_is_exactly_numpy_add(isa, dtype):
    rng = np.random.default_rng(5)
    for size in [*range(1, 70), 1000, 100_003]:
        a = rng.normal(size=size).astype(dtype)
        b = rng.normal(size=size).astype(dtype)
        for threads in (1, 2, 3):
            np.testing.assert_array_equal(native.stream_add(a, b, threads=threads, isa=isa), a + b)


# ---- memory: alignment, strides, nothing written outside out -------------------------------------


def _offset_copy(a: np.ndarray, offset: int) -> np.ndarray:
    """A C-contiguous copy of ``a`` starting ``offset`` elements into a fresh buffer."""
    buf = np.empty(a.size + offset, a.dtype)
    view = buf[offset:].reshape(a.shape)
    view[...] = a
    return view


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("accurate", FORMS)
def test_any_address_gives_correct_results(isa, dtype, accurate):
    vjp = functools.partial(native.softmax_vjp, accurate=accurate)
    # Offset by one element, vectors straddle cache lines: the same bits (no sum depends on the
    # address), within the bound.
    rng = np.random.default_rng(6)
    y, dy = vjp_inputs(rng, (5, 53), dtype)
    fwd = native.softmax(dy, isa=isa)
    bound = vjp_bound(y, dy, dtype, accurate=accurate)
    for offset in range(5):
        yo, dyo = _offset_copy(y, offset), _offset_copy(dy, offset)
        for threads in (1, 2):
            out = vjp(yo, dyo, isa=isa, threads=threads)
            assert_within(out, vjp_reference(y, dy), bound, f"{isa} offset={offset}")
            np.testing.assert_array_equal(out, vjp(y, dy, isa=isa))
        np.testing.assert_array_equal(native.softmax(dyo, isa=isa), fwd)
        # the same row alone, at the same address, gives the same bits as inside the batch
        np.testing.assert_array_equal(
            vjp(yo[2:3], dyo[2:3], isa=isa),
            vjp(yo, dyo, isa=isa)[2:3],
        )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("accurate", FORMS)
def test_every_head_length_and_tail_length(isa, dtype, accurate):
    vjp = functools.partial(native.softmax_vjp, accurate=accurate)
    # The VJP's output pass and the floor peel a masked head up to out's vector boundary
    # (FN(head) in kernels_simd.h), then full vectors, then a masked tail. Every
    # element offset of out and of the inputs within a vector, times every length from 1 to
    # 2W + 1, walks through every head and tail length, empty ones included.
    w = WIDTH[isa][dtype]
    rng = np.random.default_rng(20)
    for n in range(1, 2 * w + 2):
        y, dy = vjp_inputs(rng, (2, n), dtype)
        expected, bound = vjp_reference(y, dy), vjp_bound(y, dy, dtype, accurate=accurate)
        for in_off in range(w):
            yo, dyo = _offset_copy(y, in_off), _offset_copy(dy, (in_off * 3) % w)
            for out_off in (0, 1, w - 1):
                buf, out = _guarded_out(2 * n + out_off, dtype)
                out = out[out_off:].reshape(2, n)
                msg = f"{isa} n={n} in_off={in_off} out_off={out_off}"
                vjp(yo, dyo, out=out, isa=isa)
                assert_within(out, expected, bound, msg)
                native.stream_add(yo, dyo, out=out, isa=isa)
                np.testing.assert_array_equal(out, y + dy, msg)
                assert _guards_intact(buf) and np.all(buf[GUARD : GUARD + out_off] == -12345.5)


# Rows shorter than this many vectors take the SIMD VJP's short-row path (SG_SHORT_VECTORS in
# csrc/kernels_simd.h): no alignment peel, no masked store, an order of operations set by n alone.
SHORT_VECTORS = 8


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("accurate", FORMS)
def test_vjp_short_rows_every_length_offset_and_split(isa, dtype, accurate):
    vjp = functools.partial(native.softmax_vjp, accurate=accurate)
    # Every length from 1 to SHORT_VECTORS * W + 1 (below one vector: element-wise output; one
    # vector and more: full vectors plus one overlapping vector; the last two lengths take the
    # long-row path), inputs and out at several element offsets within a vector, 1, 3 and 64 rows.
    w = WIDTH[isa][dtype]
    rng = np.random.default_rng(21)
    for n in range(1, SHORT_VECTORS * w + 2):
        for rows in (1, 3, 64):
            y, dy = vjp_inputs(rng, (rows, n), dtype)
            expected, bound = vjp_reference(y, dy), vjp_bound(y, dy, dtype, accurate=accurate)
            first = None
            for in_off in (0, 1, w - 1):
                yo, dyo = _offset_copy(y, in_off), _offset_copy(dy, (in_off * 3) % w)
                for out_off in (0, 1):
                    buf, out = _guarded_out(rows * n + out_off, dtype)
                    out = out[out_off:].reshape(rows, n)
                    msg = f"{isa} {rows}x{n} in_off={in_off} out_off={out_off}"
                    vjp(yo, dyo, out=out, isa=isa, threads=1)
                    assert_within(out, expected, bound, msg)
                    assert _guards_intact(buf) and np.all(buf[GUARD : GUARD + out_off] == -12345.5)
                    if first is None:
                        first = out.copy()
                    np.testing.assert_array_equal(out, first, msg)  # the order: n's alone
                    for threads in (2, 3):
                        np.testing.assert_array_equal(
                            vjp(yo, dyo, isa=isa, threads=threads), out, msg
                        )
                    if rows > 1:  # a block of rows alone gives the bits it gives in the batch
                        np.testing.assert_array_equal(vjp(yo[1:], dyo[1:], isa=isa), out[1:], msg)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("accurate", FORMS)
def test_vjp_short_rows_streaming_variant_matches(isa, dtype, accurate):
    vjp = functools.partial(native.softmax_vjp, accurate=accurate)
    # Short rows above the streaming threshold: the streaming kernel hands them to the
    # short-row path too, so the big call gives the bits of its blocks.
    n = 10
    rows = STREAM_BYTES // (3 * np.dtype(dtype).itemsize * n) + 5
    rng = np.random.default_rng(22)
    y, dy = vjp_inputs(rng, (rows, n), dtype)
    big = vjp(y, dy, isa=isa, threads=1)
    block = rows // 7 + 1
    parts = np.concatenate(
        [vjp(y[k : k + block], dy[k : k + block], isa=isa) for k in range(0, rows, block)]
    )
    np.testing.assert_array_equal(big, parts)
    np.testing.assert_array_equal(vjp(y, dy, isa=isa, threads=2), big)
    sample = slice(0, rows, 101)
    assert_within(
        big[sample],
        vjp_reference(y[sample], dy[sample]),
        vjp_bound(y[sample], dy[sample], dtype, accurate=accurate),
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_strided_and_fortran_inputs_are_copied(dtype):
    # Copies land at other addresses: the bound, and the same bits (no sum depends on the
    # address); the O(n^2) kernel is bitwise stable too.
    rng = np.random.default_rng(7)
    y, dy = vjp_inputs(rng, (6, 40), dtype)
    expected, bound = vjp_reference(y, dy), vjp_bound(y, dy, dtype)
    ys, dys = np.repeat(y, 2, axis=1)[:, ::2], np.repeat(dy, 2, axis=1)[:, ::2]
    assert not ys.flags.c_contiguous
    assert_within(native.softmax_vjp(ys, dys), expected, bound, "strided")
    np.testing.assert_array_equal(native.softmax_vjp(ys, dys), native.softmax_vjp(y, dy))
    assert_within(native.softmax_vjp(np.asfortranarray(y), dy), expected, bound, "F-order")
    np.testing.assert_array_equal(native.softmax(ys), native.softmax(y))
    np.testing.assert_array_equal(
        native.jacobian_product_quadratic(ys, dys), native.jacobian_product_quadratic(y, dy)
    )
    # byte-misaligned (offset by 1 byte into a buffer): copied to an aligned array first
    # Partial overlap, one element either way, in both dtypes: still refused, for every function.
    for dt in (np.float32, np.float64):
        buf = np.zeros(y.size + 1, dt)
        lo, hi = buf[:-1].reshape(y.shape), buf[1:].reshape(y.shape)
        other = np.ones(y.shape, dt)
        for o, i in ((lo, hi), (hi, lo)):
            with pytest.raises(ValueError, match=r"out must not overlap the input y"):
                native.softmax_vjp(i, other, out=o)
            with pytest.raises(ValueError, match=r"out must not overlap the input dy"):
                native.softmax_vjp(other, i, out=o)
            with pytest.raises(ValueError, match=r"out must not overlap the input x"):
                native.softmax(i, out=o)
            with pytest.raises(ValueError, match=r"out must not overlap the input b"):
                native.stream_add(other, i, out=o)
    raw = np.zeros(y.nbytes + 1, np.uint8)
    ym = np.frombuffer(raw.data, dtype=dtype, count=y.size, offset=1).reshape(y.shape)
    assert not ym.flags.aligned
    raw[1:] = y.view(np.uint8).ravel()
    assert_within(native.softmax_vjp(ym, dy), expected, bound, "misaligned")
    np.testing.assert_array_equal(native.softmax(ym), native.softmax(y))
    # big-endian input
    big_endian = y.astype(y.dtype.newbyteorder(">"))
    assert_within(native.softmax_vjp(big_endian, dy), expected, bound, "big-endian")
    np.testing.assert_array_equal(native.softmax(big_endian), native.softmax(y))


GUARD = 37


def _guarded_out(shape, dtype):
    """An ``out`` inside a larger buffer whose GUARD elements on each side hold a sentinel."""
    size = int(np.prod(shape))
    buf = np.full(size + 2 * GUARD, -12345.5, dtype)
    return buf, buf[GUARD : GUARD + size].reshape(shape)


def _guards_intact(buf):
    return bool(np.all(buf[:GUARD] == -12345.5) and np.all(buf[-GUARD:] == -12345.5))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa", ISAS)
def test_nothing_written_outside_out(isa, dtype):
    rng = np.random.default_rng(8)
    for n in [*tail_lengths(isa, dtype), 1000]:
        y, dy = vjp_inputs(rng, (3, n), dtype)
        for threads in (1, 2):
            buf, out = _guarded_out(y.shape, dtype)
            assert native.softmax_vjp(y, dy, out=out, isa=isa, threads=threads) is out
            assert _guards_intact(buf), f"vjp n={n}"
            np.testing.assert_array_equal(out, native.softmax_vjp(y, dy, isa=isa))
            buf, out = _guarded_out(y.shape, dtype)
            assert native.softmax(dy, out=out, isa=isa, threads=threads) is out
            assert _guards_intact(buf), f"softmax n={n}"
            np.testing.assert_array_equal(out, native.softmax(dy, isa=isa))
            buf, out = _guarded_out(y.size, dtype)
            native.stream_add(y.ravel(), dy.ravel(), out=out, isa=isa, threads=threads)
            assert _guards_intact(buf), f"stream_add n={n}"
    # inputs are never written either
    y, dy = vjp_inputs(rng, (3, 45), dtype)
    y0, dy0 = y.copy(), dy.copy()
    native.softmax_vjp(y, dy, isa=isa)
    native.softmax(y, isa=isa)
    native.jacobian_product_quadratic(y, dy, isa=isa)
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(dy, dy0)


def test_empty_arrays():
    for shape in [(0,), (0, 5), (3, 0), (2, 0, 4)]:
        a = np.zeros(shape, np.float32)
        for result in (
            native.softmax_vjp(a, a),
            native.softmax(a),
            native.jacobian_product_quadratic(a, a),
            native.stream_add(a, a),
        ):
            assert result.shape == shape and result.dtype == np.float32


# ---- threads -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("accurate", FORMS)
def test_threads_give_bitwise_identical_results(isa, dtype, accurate):
    vjp = functools.partial(native.softmax_vjp, accurate=accurate)
    rng = np.random.default_rng(9)
    for rows, n in [(2, 1000), (7, 33), (64, 100), (3, 4099)]:
        y, dy = vjp_inputs(rng, (rows, n), dtype)
        x = rng.normal(scale=20, size=(rows, n)).astype(dtype)
        vjp1 = vjp(y, dy, isa=isa, threads=1)
        fwd1 = native.softmax(x, isa=isa, threads=1)
        for threads in (2, 3, 100):  # more threads than rows: capped at the row count
            np.testing.assert_array_equal(vjp(y, dy, isa=isa, threads=threads), vjp1)
            np.testing.assert_array_equal(native.softmax(x, isa=isa, threads=threads), fwd1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("accurate", FORMS)
def test_every_thread_count_gives_the_same_bits(isa, dtype, accurate):
    vjp = functools.partial(native.softmax_vjp, accurate=accurate)
    # Odd row counts: blocks of unequal size, and more blocks than the machine has CPUs. The
    # elementwise floor splits anywhere (at cache-line multiples), so any count of elements.
    rng = np.random.default_rng(13)
    for rows, n in [(1, 77), (5, 1000), (9, 33), (13, 257), (31, 5)]:
        y, dy = vjp_inputs(rng, (rows, n), dtype)
        x = rng.normal(scale=20, size=(rows, n)).astype(dtype)
        vjp1 = vjp(y, dy, isa=isa, threads=1)
        fwd1 = native.softmax(x, isa=isa, threads=1)
        quad1 = native.jacobian_product_quadratic(y, dy, isa=isa, threads=1)
        assert_within(
            vjp1,
            vjp_reference(y, dy),
            vjp_bound(y, dy, dtype, accurate=accurate),
            f"{isa} {rows}x{n}",
        )
        for threads in (2, 3, 4):
            msg = f"{isa} {rows}x{n} threads={threads}"
            np.testing.assert_array_equal(vjp(y, dy, isa=isa, threads=threads), vjp1, msg)
            np.testing.assert_array_equal(native.softmax(x, isa=isa, threads=threads), fwd1, msg)
            np.testing.assert_array_equal(
                native.jacobian_product_quadratic(y, dy, isa=isa, threads=threads), quad1, msg
            )
            np.testing.assert_array_equal(
                native.stream_add(y, dy, isa=isa, threads=threads), y + dy, msg
            )


def test_many_calls_with_varying_thread_counts_stay_correct():
    # The pool hands each call's blocks to whichever threads claim them, grows when a call asks
    # for more threads than it has, and must never mix two calls' blocks.
    rng = np.random.default_rng(14)
    cases = []
    for _ in range(12):
        rows, n = int(rng.integers(1, 40)), int(rng.integers(1, 300))
        dtype = DTYPES[int(rng.integers(0, 2))]
        y, dy = vjp_inputs(rng, (rows, n), dtype)
        cases.append((y, dy, native.softmax_vjp(y, dy, threads=1), native.softmax(dy, threads=1)))
    for _ in range(400):
        y, dy, vjp1, fwd1 = cases[int(rng.integers(0, len(cases)))]
        threads = int(rng.integers(1, 7))
        np.testing.assert_array_equal(native.softmax_vjp(y, dy, threads=threads), vjp1)
        np.testing.assert_array_equal(native.softmax(dy, threads=threads), fwd1)
    assert native._pool_workers() >= 5  # grown at least to the largest call's needs, 6 - 1


def test_concurrent_callers_get_their_own_results():
    # cffi releases the GIL during a call, so Python threads really call the C library at the
    # same time: one uses the pool, the others find it busy and run their blocks inline.
    import threading

    rng = np.random.default_rng(15)
    inputs = [vjp_inputs(rng, (17, 300), np.float32) for _ in range(4)]
    expected = [native.softmax_vjp(y, dy, threads=1) for y, dy in inputs]
    failures = []

    def worker(k):
        y, dy = inputs[k]
        for i in range(200):
            out = native.softmax_vjp(y, dy, threads=1 + (i + k) % 3)
            if not np.array_equal(out, expected[k]):
                failures.append((k, i))

    callers = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in callers:
        t.start()
    for t in callers:
        t.join()
    assert failures == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_fork_child_starts_its_own_pool():
    # After the parent has used the pool, a forked child has none of its threads (fork copies
    # only the calling thread). The pool must notice: the child starts workers of its own on its
    # first multithreaded call, and gets the same bits as the parent. The parent is a fresh
    # interpreter: pytest's has PyTorch's and JAX's threads by now, and forking a process with
    # threads it does not own is what the test must not depend on.
    code = """
import os, numpy as np
from softmax_grad import native
rng = np.random.default_rng(16)
y, dy = rng.random((64, 1000)), rng.normal(size=(64, 1000))
expected = native.softmax_vjp(y, dy, threads=3)
assert native._pool_workers() >= 2
pid = os.fork()
if pid == 0:  # the child reports through its exit code only
    code = 1
    try:
        before = native._pool_workers()
        ok = all(np.array_equal(native.softmax_vjp(y, dy, threads=t), expected) for t in (3, 2, 4))
        code = 0 if ok and before == 0 and native._pool_workers() >= 2 else 2 + (before != 0)
    finally:
        os._exit(code)
_, status = os.waitpid(pid, 0)
assert os.WIFEXITED(status), status
print("child", os.WEXITSTATUS(status))
np.testing.assert_array_equal(native.softmax_vjp(y, dy, threads=2), expected)  # parent's pool
print("parent ok")
"""
    done = _run_python(code)  # its timeout fails the test if the pool deadlocks after fork
    assert done.returncode == 0, done.stderr
    # 2 = wrong result or no workers, 3 = the pool was kept
    assert done.stdout.split() == ["child", "0", "parent", "ok"], done.stdout + done.stderr


def test_interpreter_exit_with_live_workers_does_not_hang():
    # Workers are detached and never joined: exit must not wait for them, whether they are
    # spinning (exit right after a call) or asleep on the condition variable (after a pause).
    # The child loads the very extension module these tests use (the sanitized one under
    # `make sanitize`).
    module = native._native
    code = f"""
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location({module.__name__!r}, {module.__file__!r})
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
sys.modules["softmax_grad._native"] = mod
import numpy as np
from softmax_grad import native
assert native._native is mod
native.THREAD_THRESHOLD_BYTES = 1
x = np.random.default_rng(0).normal(size=(64, 500))
y = native.softmax(x, threads=4)
assert native._pool_workers() == 3
np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-12)
time.sleep(float(sys.argv[1]))
print("done")
"""
    for pause in ("0", "0.05"):
        proc = subprocess.run(
            [sys.executable, "-c", code, pause], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0 and proc.stdout.strip() == "done", proc.stderr


# ---- the fast path -------------------------------------------------------------------------------


@pytest.fixture
def slow_path_calls(monkeypatch):
    """A list that gets one entry per call that took native._slow (the validating path)."""
    calls = []
    slow = native._slow

    def counted(*args):
        calls.append(args[0].names)
        return slow(*args)

    monkeypatch.setattr(native, "_slow", counted)
    return calls


@pytest.mark.parametrize("dtype", DTYPES)
def test_read_only_inputs_take_the_fast_path(dtype, slow_path_calls):
    rng = np.random.default_rng(17)
    y, dy = vjp_inputs(rng, (6, 45), dtype)
    x = rng.normal(size=(6, 45)).astype(dtype)
    expected = (
        native.softmax_vjp(y, dy),
        native.softmax(x),
        native.jacobian_product_quadratic(y, dy),
        native.stream_add(y, dy),
    )
    for arr in (y, dy, x):
        arr.flags.writeable = False
    out = np.empty_like(y)
    results = (
        native.softmax_vjp(y, dy),
        native.softmax(x),
        native.jacobian_product_quadratic(y, dy),
        native.stream_add(y, dy),
        native.softmax_vjp(y, dy, out=out, threads=2),
    )
    assert slow_path_calls == []
    for got, want in zip(results, (*expected, expected[0]), strict=True):
        np.testing.assert_array_equal(got, want)
    # the results against independent references, too
    assert_within(results[0], vjp_reference(y, dy), vjp_bound(y, dy, dtype), "read-only")
    assert_softmax_close(results[1], x, dtype, "read-only")
    np.testing.assert_array_equal(results[3], y + dy)


class _Sub(np.ndarray):
    """An ndarray subclass: np.asarray turns it into a plain view of the same memory."""


def test_what_takes_the_slow_path(slow_path_calls):
    # Everything the fast path does not recognise goes to _slow, which copies or raises; the
    # results are the fast path's.
    rng = np.random.default_rng(18)
    y, dy = vjp_inputs(rng, (4, 40), np.float32)
    want = native.softmax_vjp(y, dy)
    assert slow_path_calls == []
    raw = np.zeros(y.nbytes + 1, np.uint8)
    ym = np.frombuffer(raw.data, np.float32, count=y.size, offset=1).reshape(y.shape)
    raw[1:] = y.view(np.uint8).ravel()
    ys = np.repeat(y, 2, axis=1)[:, ::2]
    for label, call in [
        ("misaligned", lambda: native.softmax_vjp(ym, dy)),  # C says SG_BAD_ALIGNMENT
        ("strided", lambda: native.softmax_vjp(ys, dy)),  # ffi.from_buffer refuses it
        ("subclass", lambda: native.softmax_vjp(y.view(_Sub), dy)),
        ("np.int64 threads", lambda: native.softmax_vjp(y, dy, threads=np.int64(2))),
    ]:
        got = call()
        assert slow_path_calls[-1] == ("y", "dy"), label
        np.testing.assert_array_equal(got, want, label)  # copies elsewhere: the same bits
    assert len(slow_path_calls) == 4


@pytest.mark.parametrize("dtype", DTYPES)
def test_c_entry_points_refuse_misaligned_and_overlapping_pointers(dtype):
    # The fast path relies on these statuses (softmax_grad.h: SG_BAD_ALIGNMENT, SG_OVERLAP):
    # the C library must refuse before any kernel reads or writes.
    ffi, lib = native._ffi, native._lib
    suffix = "f32" if dtype == np.float32 else "f64"
    ct = ffi.typeof("float *" if dtype == np.float32 else "double *")
    vjp, fwd = getattr(lib, f"sg_softmax_vjp_{suffix}"), getattr(lib, f"sg_softmax_{suffix}")
    add = getattr(lib, f"sg_stream_add_{suffix}")
    item = np.dtype(dtype).itemsize
    buf = np.zeros(64 * item + 1, np.uint8)
    mis = ffi.cast(ct, int(ffi.cast("uintptr_t", ffi.from_buffer(buf))) + 1)
    a = np.ones(16, dtype)
    b = np.ones(16, dtype)
    out = np.full(16, -7.0, dtype)
    pa, pb, po = (ffi.from_buffer(ct, v) for v in (a, b, out))
    assert vjp(mis, pb, po, 2, 8, 0, 1) == lib.SG_BAD_ALIGNMENT
    assert vjp(pa, pb, mis, 2, 8, 0, 1) == lib.SG_BAD_ALIGNMENT
    assert fwd(mis, po, 2, 8, 0, 1) == lib.SG_BAD_ALIGNMENT
    assert add(pa, mis, po, 2, 8, 0, 1) == lib.SG_BAD_ALIGNMENT
    assert vjp(pa, pb, pa + 15, 2, 8, 0, 1) == lib.SG_OVERLAP  # one element shared
    assert vjp(pa, pb, pb - 15, 2, 8, 0, 1) == lib.SG_OVERLAP
    assert fwd(pa, pa + 3, 2, 8, 0, 2) == lib.SG_OVERLAP
    assert add(pa, pb, pa, 1, 16, 0, 1) == lib.SG_OVERLAP
    np.testing.assert_array_equal(out, -7.0)  # nothing was written
    assert vjp(pa, pb, po, 2, 8, 0, 0) == lib.SG_BAD_THREADS
    assert vjp(pa, ffi.NULL, po, 2, 8, 0, 1) == lib.SG_BAD_POINTER
    assert vjp(pa, pb, po, 2, 8, 7, 1) == lib.SG_BAD_ISA
    # adjacent, not overlapping; and empty calls are fine whatever the pointers
    ab = np.zeros(32, dtype)
    pab = ffi.from_buffer(ct, ab)
    assert add(pab, pb, pab + 16, 1, 16, 0, 1) == lib.SG_OK
    assert vjp(mis, mis, mis, 0, 8, 0, 1) == lib.SG_OK


def test_default_threads_rule(monkeypatch):
    monkeypatch.setattr(native, "THREAD_THRESHOLD_BYTES", REAL_THREAD_THRESHOLD)
    step = REAL_THREAD_THRESHOLD
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert native.default_threads(step - 1, 1000) == 1
    assert native.default_threads(step - 1, 1000, threads=2) == 1  # threads is a maximum
    assert native.default_threads(step, 1000, threads=2) == 2
    assert native.default_threads(step, 1000, threads=5) == 2  # one more per step of work
    assert native.default_threads(3 * step, 1000, threads=5) == 4
    assert native.default_threads(100 * step, 1000) == min(cpus, 101)
    assert native.default_threads(100 * step, 1, threads=4) == 1  # one row is never split
    assert native.default_threads(0, 0) == 1


# ---- argument checking -------------------------------------------------------------------------


def _ok(n=5, dtype=np.float64):
    y = np.full((2, n), 1.0 / n, dtype)
    return y, np.ones_like(y)


def test_wrong_dtypes_raise_type_error():
    y, dy = _ok()
    half_too = "float32, float64, float16 or bfloat16"
    with pytest.raises(TypeError, match=rf"y must be a {half_too} array, got dtype int64"):
        native.softmax_vjp(np.ones((2, 5), np.int64), dy)
    with pytest.raises(TypeError, match=r"same dtype, got float64 and float16"):
        native.softmax_vjp(y, dy.astype(np.float16))
    with pytest.raises(TypeError, match=rf"x must be a {half_too} array, got dtype complex128"):
        native.softmax(y.astype(complex))
    if LONG_IS_WIDER:
        with pytest.raises(TypeError, match=rf"x must be a {half_too} array, got dtype float"):
            native.softmax(y.astype(np.longdouble))
    with pytest.raises(TypeError, match=r"a must be a float32 or float64 array, got dtype float16"):
        native.stream_add(y.astype(np.float16), dy.astype(np.float16))
    with pytest.raises(
        TypeError, match=r"y must be a float32 or float64 array, got dtype bfloat16"
    ):
        native.jacobian_product_quadratic(y.astype(BF16), dy.astype(BF16))
    with pytest.raises(TypeError, match=r"out must have dtype bfloat16 like the inputs"):
        native.softmax(y.astype(BF16), out=np.empty(y.shape, np.float16))
    with pytest.raises(TypeError, match=r"same dtype, got float64 and float32"):
        native.softmax_vjp(y, dy.astype(np.float32))
    with pytest.raises(TypeError, match=r"a and b must have the same dtype"):
        native.stream_add(y, dy.astype(np.float32))
    with pytest.raises(
        TypeError, match=r"out must have dtype float64 like the inputs, got dtype float32"
    ):
        native.softmax_vjp(y, dy, out=np.empty(y.shape, np.float32))
    with pytest.raises(TypeError, match=r"out must be a numpy.ndarray or None, got list"):
        native.softmax(y, out=[[0.0] * 5] * 2)
    with pytest.raises(TypeError, match=r"y must be a float32 or float64 array, got dtype <U1"):
        native.jacobian_product_quadratic(["a"], ["b"])


def test_shape_problems_raise_value_error():
    y, dy = _ok()
    with pytest.raises(ValueError, match=r"y.shape=\(2, 5\) and dy.shape=\(2, 4\)"):
        native.softmax_vjp(y, dy[:, :4])
    with pytest.raises(ValueError, match=r"y.shape=\(2, 5\) and dy.shape=\(5,\)"):
        native.jacobian_product_quadratic(y, dy[0])
    with pytest.raises(ValueError, match=r"x must have at least one dimension.*0-d"):
        native.softmax(np.float64(1.0))
    with pytest.raises(
        ValueError, match=r"out must have shape \(2, 5\) like the inputs, got shape \(5, 2\)"
    ):
        native.softmax_vjp(y, dy, out=np.empty((5, 2)))


def test_out_adjacent_to_inputs_in_one_buffer_is_accepted():
    # y, dy and out back to back in one allocation: they touch but do not overlap, so the
    # overlap check must let them through, and the result is the NumPy formula's.
    for dt in (np.float32, np.float64):
        rng = np.random.default_rng(7)
        x, dy = rng.standard_normal((2, 2, 6)).astype(dt)
        y = sg.softmax(x.astype(np.float64)).astype(dt)
        buf = np.empty(3 * y.size, dt)
        by, bdy, bout = (buf[k * y.size : (k + 1) * y.size].reshape(y.shape) for k in range(3))
        by[...], bdy[...] = y, dy
        tol = 1e-5 if dt == np.float32 else 1e-13
        assert native.softmax_vjp(by, bdy, out=bout) is bout
        want = sg.softmax_vjp(y.astype(np.float64), dy.astype(np.float64))
        np.testing.assert_allclose(bout, want, rtol=tol, atol=tol)
        assert native.softmax(by, out=bout) is bout
        np.testing.assert_allclose(bout, sg.softmax(y.astype(np.float64)), rtol=tol)
        assert native.stream_add(bdy, by, out=bout) is bout
        np.testing.assert_array_equal(bout, y + dy)


def test_bad_out_raises_value_error():
    y, dy = _ok(n=6)
    with pytest.raises(ValueError, match=r"out must be C-contiguous"):
        native.softmax_vjp(y, dy, out=np.empty((2, 12))[:, ::2])
    with pytest.raises(ValueError, match=r"out must be C-contiguous"):
        native.softmax(y, out=np.empty((6, 2)).T)
    ro = np.empty_like(y)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"out must be writeable"):
        native.softmax(y, out=ro)
    with pytest.raises(ValueError, match=r"out must not overlap the input y"):
        native.softmax_vjp(y, dy, out=y)
    with pytest.raises(ValueError, match=r"out must not overlap the input dy"):
        native.softmax_vjp(y, dy, out=dy)
    with pytest.raises(ValueError, match=r"out must not overlap the input x"):
        native.softmax(y, out=y)
    raw = np.zeros(y.nbytes + 1, np.uint8)
    mis = np.frombuffer(raw.data, np.float64, count=y.size, offset=1).reshape(y.shape)
    with pytest.raises(ValueError, match=r"out must be aligned"):
        native.softmax(y, out=mis)
    with pytest.raises(
        TypeError, match=r"out must have dtype float64 like the inputs, got dtype >f8"
    ):
        native.softmax(y, out=np.empty(y.shape, ">f8"))


def test_accurate_must_be_a_bool():
    y, dy = _ok()
    for bad in (1, 0, "yes", None, 1.0):
        with pytest.raises(TypeError, match=r"accurate must be True or False, got"):
            native.softmax_vjp(y, dy, accurate=bad)
    # NumPy's booleans select the same kernels as Python's
    np.testing.assert_array_equal(
        native.softmax_vjp(y, dy, accurate=np.True_), native.softmax_vjp(y, dy, accurate=True)
    )
    np.testing.assert_array_equal(
        native.softmax_vjp(y, dy, accurate=np.False_), native.softmax_vjp(y, dy)
    )


def test_bad_isa_raises_value_error(monkeypatch):
    y, dy = _ok()
    for bad in ("sse2", "AVX2", 2, ""):
        with pytest.raises(ValueError, match=r"unknown isa=.*allowed: None or one of scalar, avx2"):
            native.softmax_vjp(y, dy, isa=bad)
        with pytest.raises(ValueError, match=r"unknown isa="):
            native.softmax(y, isa=bad)
        with pytest.raises(ValueError, match=r"unknown isa="):
            native.jacobian_product_quadratic(y, dy, isa=bad)
        with pytest.raises(ValueError, match=r"unknown isa="):
            native.stream_add(y, dy, isa=bad)
    # A CPU without AVX-512: the name is known but the path is not available.
    monkeypatch.setattr(native, "_AVAILABLE", ("scalar", "avx2"))
    monkeypatch.setattr(native, "_ISA_INDEX", {"scalar": 0, "avx2": 1})
    with pytest.raises(
        ValueError, match=r"isa='avx512' is not available on this CPU; available here: scalar, avx2"
    ):
        native.softmax_vjp(y, dy, isa="avx512")


def test_bad_threads():
    y, dy = _ok()
    for bad in (0, -1, np.int64(0)):
        with pytest.raises(
            ValueError, match=rf"threads={bad} is not allowed; use None or an int >= 1"
        ):
            native.softmax_vjp(y, dy, threads=bad)
        with pytest.raises(ValueError, match=r"threads="):
            native.softmax(y, threads=bad)
        with pytest.raises(ValueError, match=r"threads="):
            native.stream_add(y, dy, threads=bad)
    for bad in (1.5, True, "2"):
        with pytest.raises(TypeError, match=r"threads must be None or an int >= 1"):
            native.softmax_vjp(y, dy, threads=bad)


def test_lists_and_scalars_rows_work():
    # array_like inputs: a list of floats becomes float64; a 1-D array is one row
    out = native.softmax([1.0, 2.0])
    np.testing.assert_allclose(out, [1 / (1 + np.e), np.e / (1 + np.e)], rtol=1e-15)
    dx = native.softmax_vjp([0.5, 0.5], [1.0, 0.0])
    np.testing.assert_allclose(dx, [0.25, -0.25], rtol=1e-15)


# ---- properties (hypothesis) ---------------------------------------------------------------------


def _arrays(dtype, elements):
    return hnp.arrays(
        dtype, hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=40), elements=elements
    )


_special = st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30])


@settings(max_examples=60)
@given(st.sampled_from(DTYPES), st.sampled_from(ISAS), st.data())
def test_property_softmax_matches_numpy_formula(dtype, isa, data):
    finite = st.floats(-60, 60, width=32)
    x = data.draw(_arrays(dtype, finite | _special))
    out = native.softmax(x, isa=isa, threads=data.draw(st.integers(1, 3)))
    expected = sg.softmax(x)  # NumPy formula in the same dtype: where NaN/inf/0 land
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    assert_softmax_close(out, x, dtype, isa)


@settings(max_examples=60)
@given(st.sampled_from(DTYPES), st.sampled_from(ISAS), st.data())
def test_property_vjp_matches_numpy_formula(dtype, isa, data):
    finite = st.floats(-1e3, 1e3, width=32)
    y = data.draw(_arrays(dtype, finite | _special))
    dy = data.draw(hnp.arrays(dtype, y.shape, elements=finite | _special))
    out = native.softmax_vjp(y, dy, isa=isa, threads=data.draw(st.integers(1, 3)))
    expected = numpy_vjp_same_dtype(y, dy)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    assert_within(out, expected, 2 * vjp_bound(y, dy, dtype), isa)


# ---- the build ---------------------------------------------------------------------------------


def _run_python(code: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )


def test_import_needs_no_compiler():
    # With no PATH and CC pointing at a failing program, a compile at import would fail.
    env = {k: v for k, v in os.environ.items() if k not in ("PATH", "CC")}
    env.update(PATH="", CC="false")
    proc = _run_python("from softmax_grad import native; print(native.isas())", env=env)
    assert proc.returncode == 0, proc.stderr
    assert native._native.__file__.endswith(".so")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="builds with gcc, reads ELF")
def test_build_without_avx512(tmp_path):
    # SG_NO_AVX512 (what _native_build.py defines when SG_NO_AVX512=1 is in the environment):
    # kernels_avx512.c compiles to nothing -- no intrinsics needed -- and dispatch never offers
    # the path, whatever the CPU. Compiled at -O0 to keep the test quick (-O1 takes half a
    # minute for kernels_scalar.c); with -ffp-contract=off every level gives the same bits.
    import ctypes
    import importlib.util

    from tests.native_sanitized import build

    name = "_sg_native_no_avx512"
    so = build(tmp_path, module=name, flags=("-O0",), macros=(("SG_NO_AVX512", "1"),))
    spec = importlib.util.spec_from_file_location(name, so)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ffi, lib = module.ffi, module.lib
    mask = lib.sg_available_isas()
    assert mask == native._MASK & ~(1 << 2), (bin(mask), bin(native._MASK))
    assert not hasattr(ctypes.CDLL(str(so)), "sg_kernels_avx512")
    if sys.maxsize > 2**32 and os.uname().machine == "x86_64":  # the shipped build has it
        assert hasattr(ctypes.CDLL(native._native.__file__), "sg_kernels_avx512")
    # and the build works: the VJP of its best path equals the shipped module's
    y, dy = vjp_inputs(np.random.default_rng(19), (3, 37), np.float32)
    out = np.empty_like(y)
    ct = ffi.typeof("float *")
    pointers = [ffi.from_buffer(ct, v) for v in (y, dy, out)]
    best = mask.bit_length() - 1
    assert lib.sg_softmax_vjp_f32(*pointers, 3, 37, best, 1) == 0
    assert lib.sg_softmax_vjp_f32(*pointers, 3, 37, 2, 1) == lib.SG_BAD_ISA
    np.testing.assert_array_equal(out, native.softmax_vjp(y, dy, isa=native.ALL_ISAS[best]))
    # the environment switch the shipped build reads
    from softmax_grad import _native_build

    assert _native_build.macros({"SG_NO_AVX512": "1"}) == (("SG_NO_AVX512", "1"),)
    assert _native_build.macros({"SG_NO_AVX512": "0"}) == _native_build.macros({}) == ()


def test_missing_extension_says_how_to_build():
    code = (
        "import sys; sys.modules['softmax_grad._native'] = None\n"
        "import softmax_grad  # the pure-NumPy package works without the extension\n"
        "print(softmax_grad.softmax([0.0, 0.0]))\n"
        "import softmax_grad.native\n"
    )
    proc = _run_python(code)
    assert proc.returncode != 0
    assert "[0.5 0.5]" in proc.stdout
    assert "ImportError" in proc.stderr
    assert "make install" in proc.stderr and "pip install -e ." in proc.stderr


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa", ISAS)
def test_vjp_streaming_variant_any_alignment(isa, dtype):
    # The streaming kernel writes out with non-temporal (aligned) stores after a masked head: out,
    # y and dy at different element offsets, rows short and long, must give the cache variant's
    # bits (row blocks below the threshold) and write nothing outside out.
    itemsize = np.dtype(dtype).itemsize
    rng = np.random.default_rng(11)
    for n, out_off, in_off in [(37, 1, 0), (1000, 3, 5), (4099, 0, 2)]:
        rows = STREAM_BYTES // (3 * itemsize * n) + 2
        size = rows * n
        base = rng.random(size + 8).astype(dtype)
        y = base[in_off : in_off + size].reshape(rows, n)
        dy = rng.random((rows, n)).astype(dtype)
        block = max(1, (1 << 20) // (itemsize * n))
        parts = np.concatenate(
            [
                native.softmax_vjp(y[k : k + block], dy[k : k + block], isa=isa)
                for k in range(0, rows, block)
            ]
        )
        for threads in (1, 2):
            buf, out = _guarded_out(size + out_off, dtype)
            out = out[out_off:].reshape(rows, n)
            native.softmax_vjp(y, dy, out=out, isa=isa, threads=threads)
            assert _guards_intact(buf), f"n={n} threads={threads}"
            assert np.all(buf[GUARD : GUARD + out_off] == -12345.5)
            np.testing.assert_array_equal(out, parts, f"n={n} threads={threads}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa", ISAS)
def test_stream_add_streaming_variant_any_alignment(isa, dtype):
    # Above the VJP's streaming threshold the floor also switches to non-temporal (aligned) stores
    # after a masked head: any element offset of out and of the inputs must still give exactly
    # a + b, split over 1 or 2 threads, without writing outside out.
    itemsize = np.dtype(dtype).itemsize
    size = STREAM_BYTES // (3 * itemsize) + 1001  # odd: a masked tail as well
    rng = np.random.default_rng(12)
    base = rng.random(size + 8).astype(dtype)
    b = rng.random(size).astype(dtype)
    for out_off, in_off in [(0, 0), (1, 0), (3, 5), (7, 2)]:
        a = base[in_off : in_off + size]
        for threads in (1, 2):
            buf, out = _guarded_out(size + out_off, dtype)
            out = out[out_off:]
            assert native.stream_add(a, b, out=out, isa=isa, threads=threads) is out
            assert _guards_intact(buf), f"out_off={out_off} threads={threads}"
            assert np.all(buf[GUARD : GUARD + out_off] == -12345.5)
            np.testing.assert_array_equal(out, a + b, f"out_off={out_off} threads={threads}")


# ---- one summation order: n alone decides it (kernels_sum.h, issue 12) ---------------------------

LANES = {np.float32: 64, np.float64: 32}  # SG_SUM_BYTES = 256 bytes of lanes
ROUNDS = 16  # SG_SUM_ROUNDS: terms per lane and block


def ordered_sum(terms: np.ndarray, dtype) -> tuple:
    """The documented order (native.summation_depth's docstring), written from the description,
    not from the C: lane j mod L of each block of R L terms, each lane in index order from +0,
    the lanes by the halving tree, the blocks by a binary counter. Returns the sum in ``dtype``
    and the largest number of roundings a term went through (its product's included)."""
    lanes, block = LANES[dtype], ROUNDS * LANES[dtype]
    terms = np.asarray(terms, dtype)
    stack = []  # (value, depth)
    for b0 in range(0, len(terms), block):
        part = terms[b0 : b0 + block]
        acc = np.zeros(lanes, dtype)
        depth = np.zeros(lanes, int)  # roundings so far, product included
        for r in range(0, len(part), lanes):
            chunk = part[r : r + lanes]
            k = len(chunk)
            depth[:k] = np.where(r == 0, 1, np.maximum(depth[:k], 1) + 1)
            acc[:k] = acc[:k] + chunk  # numpy: one rounding per lane, like the kernels
        used = min(lanes, len(part))
        h = lanes // 2
        while h >= 1:
            real = np.arange(h) + h < used  # partners holding terms: a real, rounded addition
            depth[:h] = np.where(real, np.maximum(depth[:h], depth[h : 2 * h]) + 1, depth[:h])
            acc[:h] = acc[:h] + acc[h : 2 * h]
            used = min(used, h)
            h //= 2
        value, d = acc[0], int(depth[0])
        count = b0 // block
        while count & 1:
            prev, pd = stack.pop()
            value, d = dtype(prev + value), max(pd, d) + 1
            count >>= 1
        stack.append((value, d))
    value, d = stack.pop()
    while stack:
        prev, pd = stack.pop()
        value, d = dtype(prev + value), max(pd, d) + 1
    return dtype(value), d


def native_dot(y, dy, isa):
    """<y, dy> as the native VJP computes it, read back exactly: y_0 = 1/4 and dy_0 = 0 make
    dx_0 = 1/4 * (0 - dot), exact (all y < 1/2: the plain formula)."""
    y, dy = y.copy(), dy.copy()
    y[..., 0], dy[..., 0] = 0.25, 0.0
    return -4 * native.softmax_vjp(y, dy, isa=isa)[..., 0], y, dy


SUM_LENGTHS = {
    dt: sorted(
        {*range(1, 2 * LANES[dt] + 2)}
        | {k * ROUNDS * LANES[dt] + d for k in (1, 2, 3, 5) for d in (-1, 0, 1)}
        | {4099, 7 * ROUNDS * LANES[dt] + 13}
    )
    for dt in DTYPES
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa", ISAS)
def test_dot_product_follows_the_documented_order(isa, dtype):
    # Bitwise equal to ordered_sum of the rounded products, for lengths 1..2L+1 and around block
    # boundaries; and summation_depth is the depth that order has.
    rng = np.random.default_rng(30)
    for n in SUM_LENGTHS[dtype]:
        y = rng.uniform(0, 0.45, size=n).astype(dtype)
        dy = rng.normal(size=n).astype(dtype)
        dot, y, dy = native_dot(y, dy, isa)
        want, depth = ordered_sum(y * dy, dtype)  # y * dy: the rounded products in dtype
        assert dot == want, f"{isa} n={n}: {dot!r} != {want!r}"
        assert native.summation_depth(n, dtype) == depth, f"n={n}"


def test_summation_depth_arguments_and_growth():
    assert native.summation_depth(0, np.float32) == 0
    assert native.summation_depth(1, np.float64) == 1
    # log n growth: doubling n past a block adds one level
    assert native.summation_depth(2**22, np.float32) == native.summation_depth(2**21, "f4") + 1
    with pytest.raises(TypeError, match=r"dtype must be float32 or float64, got float16"):
        native.summation_depth(10, np.float16)
    with pytest.raises(ValueError, match=r"n must be an int >= 0, got -1"):
        native.summation_depth(-1, np.float32)


def _at(a: np.ndarray, offset: int) -> np.ndarray:
    """A copy of ``a`` whose data starts ``offset`` elements past a 64-byte boundary."""
    item = a.itemsize
    buf = np.empty(a.size + 64 // item + offset, a.dtype)
    start = (-buf.ctypes.data % 64) // item + offset
    view = buf[start : start + a.size].reshape(a.shape)
    view[...] = a
    return view


def _confident_batch(rng, rows, n, dtype):
    """Rows of softmax probabilities, about half of them with an entry >= 1/2, and a dy."""
    x = rng.normal(scale=2, size=(rows, n))
    x[::2, rng.integers(0, n)] += 8  # every other row confident
    return sg.softmax(x).astype(dtype), rng.normal(size=(rows, n)).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("accurate", FORMS)
def test_bits_identical_at_16_offsets_every_thread_count_and_isa(dtype, accurate):
    vjp = functools.partial(native.softmax_vjp, accurate=accurate)
    # Inputs and out at 16 element offsets each (independently), 1 to 3 threads, every ISA:
    # one answer, for confident and other rows, and for the forward pass.
    rng = np.random.default_rng(31)
    for rows, n in [(3, 5), (3, 63), (3, 64), (4, 65), (3, 129), (5, 1000), (3, 1025), (2, 4099)]:
        y, dy = _confident_batch(rng, rows, n, dtype)
        x = rng.normal(scale=20, size=(rows, n)).astype(dtype)
        vjp0 = vjp(y, dy, isa="scalar", threads=1)
        fwd0 = native.softmax(x, isa="scalar", threads=1)
        assert_within(
            vjp0, vjp_reference(y, dy), vjp_bound(y, dy, dtype, accurate=accurate), f"{rows}x{n}"
        )
        for isa in ISAS:
            for k in range(16):
                yo, dyo, xo = _at(y, k), _at(dy, (3 * k) % 16), _at(x, (7 * k) % 16)
                threads = 1 + k % 3
                out = _at(np.zeros_like(y), (5 * k) % 16)
                msg = f"{isa} {rows}x{n} offset {k} threads {threads}"
                vjp(yo, dyo, out=out, isa=isa, threads=threads)
                np.testing.assert_array_equal(out, vjp0, msg)
                native.softmax(xo, out=out, isa=isa, threads=threads)
                np.testing.assert_array_equal(out, fwd0, msg)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("accurate", FORMS)
def test_streaming_variant_gives_the_scalar_bits(dtype, accurate):
    vjp = functools.partial(native.softmax_vjp, accurate=accurate)
    # Above STREAM_BYTES the SIMD paths pipeline rows with non-temporal stores; confident rows
    # take their second pass inside that pipeline. Same bits as the scalar path, at an offset.
    n = 1000
    rows = STREAM_BYTES // (3 * np.dtype(dtype).itemsize * n) + 3
    rng = np.random.default_rng(32)
    y, dy = _confident_batch(rng, rows, n, dtype)
    want = vjp(y, dy, isa="scalar", threads=1)
    for isa in ISAS:
        for off in (0, 3):
            got = vjp(_at(y, off), _at(dy, off + 1), isa=isa, threads=1 + off % 2)
            np.testing.assert_array_equal(got, want, f"{isa} offset {off}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("accurate", FORMS)
def test_overflowing_dot_product_same_answer_everywhere(dtype, accurate):
    vjp = functools.partial(native.softmax_vjp, accurate=accurate)
    # Partial sums that overflow or not depending on the grouping: whatever the fixed order
    # gives (inf, -inf, NaN or a finite value), every path and every address gives it too.
    big = float(np.finfo(dtype).max) / 4
    rng = np.random.default_rng(33)
    for n in (9, 70, 300, 1100):
        y = np.full((6, n), 0.9, dtype)
        dy = (rng.choice([-1.0, 1.0], size=(6, n)) * big * rng.uniform(0.5, 1, size=(6, n))).astype(
            dtype
        )
        dy[0, : n // 2] = big  # the first half overflows, the second brings it back
        dy[0, n // 2 :] = -big
        want = vjp(y, dy, isa="scalar")
        for isa in ISAS:
            for k in (0, 1, 5, 11):
                got = vjp(_at(y, k), _at(dy, k + 2), isa=isa, threads=1 + k % 3)
                np.testing.assert_array_equal(got, want, f"{isa} n={n} offset {k}")


# ---- confident rows: accurate from the logits at any gap (issue 12, item 1) ----------------------


def _exact_vjp_from_logits(x, dy):
    """mpmath at 50 digits, one row: dx = y * (dy - <y, dy>) for y = softmax(x), and each entry's
    scale y_i sum_j y_j |dy_i - dy_j| (dx_i = y_i sum_j y_j (dy_i - dy_j) on the simplex, so
    this is |dx_i| wherever the entry is well conditioned, and what an error is relative to
    where it is not)."""
    import mpmath

    with mpmath.workdps(50):
        d = [mpmath.mpf(float(v)) for v in dy]
        e = [mpmath.exp(mpmath.mpf(float(v))) for v in x]
        total = mpmath.fsum(e)
        y = [v / total for v in e]
        dot = mpmath.fsum(yi * di for yi, di in zip(y, d, strict=True))
        dx = [float(yi * (di - dot)) for yi, di in zip(y, d, strict=True)]
        scale = [
            float(yi * mpmath.fsum(yj * abs(di - dj) for yj, dj in zip(y, d, strict=True)))
            for yi, di in zip(y, d, strict=True)
        ]
    return np.array(dx), np.array(scale)


@pytest.mark.parametrize("dtype", DTYPES)
def test_confident_rows_accurate_at_every_entry_from_the_logits(dtype):
    vjp = functools.partial(native.softmax_vjp, accurate=True)
    # Logit gap g between the dominant class c and the rest, from 0 to beyond the gap where y_c
    # rounds to 1 (about 17 + ln n in float32, 37 + ln n in float64). y from native.softmax, dx
    # from native.softmax_vjp; every entry's error against mpmath from the logits, relative to
    # its scale (see _exact_vjp_from_logits), must stay a small multiple of n u. The plain
    # formula in the same dtype fails that at c at the largest gaps (checked, so the test can
    # fail).
    u = float(np.finfo(dtype).eps) / 2
    rng = np.random.default_rng(34)
    limit = 30 if dtype == np.float32 else 50
    worst, plain_worst = {}, 0.0
    for n in (2, 7, LANES[dtype] + 1, 2 * LANES[dtype] + 1):
        for gap in np.linspace(0, limit, 11):
            x = rng.normal(scale=0.3, size=n)
            c = int(rng.integers(0, n))
            x[c] = np.max(x) + gap
            dy = rng.normal(size=n)
            x, dy = x.astype(dtype), dy.astype(dtype)
            exact, scale = _exact_vjp_from_logits(x, dy)
            y = native.softmax(x[None])
            for isa in ISAS:
                got = vjp(y, dy[None], isa=isa)[0]
                rel = float(np.max(np.abs(got - exact) / scale))
                worst[isa] = max(worst.get(isa, 0.0), rel / (n * u))
                assert rel <= 8 * n * u, f"{isa} n={n} gap={gap:.1f}: {rel:.2e} > {8 * n * u:.2e}"
            with np.errstate(invalid="ignore"):
                plain = plain_formula(y, dy[None])[0]
            plain_worst = max(plain_worst, float(np.abs(plain[c] - exact[c]) / scale[c]))
    print(
        f"{np.dtype(dtype).name}: worst error / scale / (n u): {worst}; plain formula at c "
        f"{plain_worst:.2e}"
    )
    assert plain_worst > 0.5  # the plain formula loses dx_c entirely at the largest gaps


def modelled_vjp(y, dy, u=None, accurate=False):
    """The native VJP of one row by the documented rule, evaluated from ordered_sum (the model of
    the summation order, not the C): the accurate form y * ((dy - a) + t), a = dy_c, t = sum_j
    y_j (a - dy_j), iff y_c >= 1/2 at the first argmax c, |1 - sum_j y_j| <= (n + 16) u,
    <y, dy> and t finite; else the plain formula y * (dy - <y, dy>). Both in y's dtype, whose
    elementwise NumPy operations round like the kernels' (nothing fused). Returns dx and the
    form taken. u: that of the probability-row test (default: y's dtype's). accurate: the
    kernel's keyword (False: always the plain formula)."""
    dtype = y.dtype.type
    n = y.shape[-1]
    if u is None:
        u = float(np.finfo(dtype).eps) / 2
    with np.errstate(invalid="ignore", over="ignore"):
        dot, _ = ordered_sum(y * dy, dtype)
        c = int(np.argmax(y))
        if accurate and np.isfinite(dot) and y[c] >= 0.5:
            a = dy[c]
            t, _ = ordered_sum(y * (a - dy), dtype)
            total, _ = ordered_sum(y, dtype)
            if np.isfinite(t) and abs(1.0 - float(total)) <= (n + 16) * u:
                return y * ((dy - a) + t), "accurate"
        return y * (dy - dot), "plain"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("accurate", FORMS)
def test_confident_rule_each_condition_bitwise(isa, dtype, accurate):
    vjp = functools.partial(native.softmax_vjp, accurate=accurate)
    # Rows on both sides of each condition of the rule, each bitwise equal to modelled_vjp:
    # a confident row scaled by 1 + k u for k across the (n + 16) u threshold (condition ii; k
    # = 0 is the softmax row itself), y_c on both sides of 1/2 (i), and a row whose t overflows
    # while <y, dy> does not (iv). Lengths in the vector body, a tail and across a block.
    u = float(np.finfo(dtype).eps) / 2
    rng = np.random.default_rng(37)
    forms = set()
    for n in (2, 3, 70, 1100):
        x = rng.normal(size=n)
        x[n // 3] += 6
        base = sg.softmax(x)
        dy = rng.normal(size=n).astype(dtype)
        rows = [(1 + k * u) * base for k in (0, n // 2, n + 8, n + 24, 2 * n + 64, 10**3 * n)]
        rows += [0.5 * base / base[n // 3]]  # y_c = 1/2 exactly, not normalised
        half = np.full(n, 0.5 / max(n - 1, 1))
        half[n // 3] = 0.5  # y_c = 1/2, normalised
        rows += [half, np.nextafter(half, 0)]  # y_c just below 1/2
        for y in rows:
            y = np.asarray(y, dtype)
            want, form = modelled_vjp(y, dy, accurate=accurate)
            forms.add(form)
            got = vjp(y[None], dy[None], isa=isa)[0]
            np.testing.assert_array_equal(got, want, f"{isa} n={n} {form}")
        big = np.finfo(dtype).max
        y2 = np.array([0.5, 0.5], dtype)
        dy2 = np.array([big / 1.5, -big / 1.5], dtype)  # <y, dy> = 0, t = 0.5 * (4/3) big: inf
        want, form = modelled_vjp(y2, dy2, accurate=accurate)
        assert form == "plain"
        np.testing.assert_array_equal(vjp(y2[None], dy2[None], isa=isa)[0], want)
    assert forms == ({"plain", "accurate"} if accurate else {"plain"})  # both forms exercised


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("accurate", FORMS)
def test_confident_but_unnormalised_row_is_the_plain_formula(isa, dtype, accurate):
    vjp = functools.partial(native.softmax_vjp, accurate=accurate)
    # y = [0.9, 0.3]: y_0 >= 1/2 but the row sums to 1.2, so it is no softmax output and gets
    # the documented formula as written (the accurate form would differ by y_i a (sum y - 1)).
    y = np.array([[0.9, 0.3]], dtype)
    dy = np.array([[1.5, -0.25]], dtype)
    want = plain_formula(y, dy)  # the dot of two terms is p_0 + p_1 in any order
    np.testing.assert_array_equal(vjp(y, dy, isa=isa), want)
    accurate = y * ((dy - dy[:, :1]) + np.sum(y * (dy[:, :1] - dy), axis=-1, keepdims=True))
    assert np.any(accurate != want)  # the rule decides something here


CONFIDENT_SPECIAL = [
    # (y row, dy row), y a probability row with y_0 >= 1/2 up to the special value
    ([0.7, 0.1, 0.1, 0.1], [1.0, -1.0, 2.0, 0.5]),
    ([0.7, 0.1, 0.1, 0.1], [1.0, NAN, 2.0, 0.5]),
    ([0.7, 0.1, 0.1, 0.1], [NAN, -1.0, 2.0, 0.5]),
    ([0.7, 0.1, 0.1, 0.1], [INF, -1.0, 2.0, 0.5]),  # a = inf
    ([0.7, 0.1, 0.1, 0.1], [1.0, -INF, 2.0, 0.5]),
    ([0.7, 0.1, 0.0, 0.2], [1.0, -1.0, INF, 0.5]),  # 0 * inf in the dot
    ([0.7, NAN, 0.1, 0.1], [1.0, -1.0, 2.0, 0.5]),
    ([0.7, 0.1, INF, 0.1], [1.0, -1.0, 2.0, 0.5]),
    ([0.5, 0.5, 0.0, 0.0], [0.75, -0.75, 0.0, 0.0]),  # scaled to overflow t, not <y, dy>
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("accurate", FORMS)
def test_confident_rows_nan_and_inf_land_as_in_the_numpy_library(isa, dtype, accurate):
    vjp = functools.partial(native.softmax_vjp, accurate=accurate)
    # The same inputs through sg.softmax_vjp (same dtype) and the native kernel: NaN and inf in
    # the same places, finite values within both computations' bounds.
    big = float(np.finfo(dtype).max)
    for width in (4, 19, 67):
        rows = []
        for yr, dyr in CONFIDENT_SPECIAL:
            y = np.zeros(width)
            dy = np.zeros(width)
            y[-4:], dy[-4:] = yr, dyr
            if yr[0] == 0.5:
                dy *= big
            rows.append((y, dy))
        y = np.array([r[0] for r in rows], dtype)
        dy = np.array([r[1] for r in rows], dtype)
        out = vjp(y, dy, isa=isa)
        expected = numpy_vjp_same_dtype(y, dy, accurate=accurate)
        np.testing.assert_array_equal(np.isnan(out), np.isnan(expected), err_msg=f"w={width}")
        assert_within(
            out, expected, vjp_bound(y, dy, dtype, accurate=accurate) * 2, f"{isa} w={width}"
        )


# ---- long rows (issue 12, item 2) ----------------------------------------------------------------


@pytest.mark.parametrize("isa", ISAS)
def test_forward_f64_promise_holds_at_two_to_the_22(isa):
    n = 2**22
    rng = np.random.default_rng(35)
    x = rng.normal(scale=3, size=(1, n))
    got = native.softmax(x, isa=isa)
    want = softmax_reference(x)
    rel = float(np.max(np.abs(got - want) / want))
    assert rel < 1e-13, rel
    # and the sum's part of it is within gamma_k, k = summation_depth (the exp's is a few ulps)
    assert (
        abs(float(np.sum(got.astype(LONG))) - 1)
        <= _gamma(native.summation_depth(n, np.float64) + 2, np.float64) + n * 2.0**-53 * 8
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa", ISAS)
def test_long_dot_products_within_the_depth_bound(isa, dtype):
    # Up to 2^22 terms, with cancellation (signs random, so the dot is ~ S / sqrt(n)): the
    # error must stay within gamma_k S with k = summation_depth, which grows like log n, where a
    # running sum's bound grows like n. References: float64 pairwise for float32 inputs; for
    # float64 ones, exact: math.fsum of the products split exactly (Dekker's two-product).
    import math

    rng = np.random.default_rng(36)
    for n in (1025, 2**16 + 7, 2**20, 2**22):
        y = rng.uniform(0, 0.45, size=n).astype(dtype)
        dy = (rng.choice([-1.0, 1.0], size=n) * rng.uniform(0.5, 1.5, size=n)).astype(dtype)
        dot, y, dy = native_dot(y, dy, isa)
        y64, dy64 = y.astype(F64), dy.astype(F64)
        if dtype == np.float32:
            exact = float(np.sum(y64 * dy64))  # exact products, error ~1e-16 S: negligible
        else:
            p = y64 * dy64
            err = _two_product_error(y64, dy64, p)
            exact = math.fsum(np.concatenate([p, err]))
        s = float(np.sum(np.abs(y64 * dy64)))
        k = native.summation_depth(n, dtype)
        assert abs(float(dot) - exact) <= _gamma(k, dtype) * s, (n, abs(float(dot) - exact) / s)


def _two_product_error(a, b, p):
    """e with a * b = p + e exactly (Dekker's split, float64 arrays; no overflow here)."""

    def split(v):
        t = v * 134217729.0  # 2^27 + 1
        hi = t - (t - v)
        return hi, v - hi

    ah, al = split(a)
    bh, bl = split(b)
    return ((ah * bh - p) + ah * bl + al * bh) + al * bl


# ---- half precision: float16 and bfloat16 in float32, rounded once (issue 12, item 5) -----------


def _u(dtype) -> float:
    return float(ml_dtypes.finfo(dtype).eps) / 2


def _bits(a: np.ndarray) -> np.ndarray:
    return np.asarray(a).view(np.uint16)


def half_vjp_model(y, dy, accurate=False):
    """The native VJP of half rows, row by row: modelled_vjp in float32 of the exactly upcast
    rows, with the half dtype's u in the probability-row test, rounded once to the half dtype
    (by ml_dtypes / NumPy, not by the kernels' conversions)."""
    u = _u(y.dtype)
    y32, dy32 = y.astype(np.float32), dy.astype(np.float32)
    rows = [
        modelled_vjp(a, b, u=u, accurate=accurate)[0]
        for a, b in zip(y32.reshape(-1, y.shape[-1]), dy32.reshape(-1, y.shape[-1]), strict=True)
    ]
    return np.array(rows, np.float32).reshape(y.shape).astype(y.dtype)


def half_inputs(rng, rows, n, dtype, confident=True):
    """Logits x, probabilities y (the NumPy softmax, rounded to dtype), upstream dy, in dtype;
    with confident, every other row has an entry >= 1/2."""
    x = rng.normal(scale=2, size=(rows, n))
    if confident:
        x[::2, rng.integers(0, n)] += 8
    y = sg.softmax(x).astype(dtype)
    dy = rng.normal(size=(rows, n)).astype(dtype)
    return x.astype(dtype), y, dy


# float32 lanes of each path; lengths 1..2W+1 of the widest (16), and around the float32 sum's
# blocks (1024) and the forward pass's float buffer (4096 elements, then pieces of it).
HALF_LENGTHS = sorted({*range(1, 34), 63, 64, 65, 1023, 1024, 1025, 4095, 4096, 4097, 8195, 12289})


@pytest.mark.parametrize("dtype", HALVES)
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("accurate", FORMS)
def test_half_is_float32_rounded_once_bitwise(isa, dtype, accurate):
    vjp = functools.partial(native.softmax_vjp, accurate=accurate)
    # The forward pass of a half row is native.softmax of its float32 upcast, rounded once by
    # ml_dtypes/NumPy; the VJP is the model of the rule in float32 (half_vjp_model), rounded
    # once, and equals the native float32 VJP rounded once wherever the two rules agree (rows
    # without an entry >= 1/2 here).
    rng = np.random.default_rng(40)
    for n in HALF_LENGTHS:
        x, y, dy = half_inputs(rng, 2, n, dtype)
        got = native.softmax(x, isa=isa)
        assert got.dtype == dtype
        want = native.softmax(x.astype(np.float32), isa=isa).astype(dtype)
        np.testing.assert_array_equal(_bits(got), _bits(want), f"softmax {isa} n={n}")
        got = vjp(y, dy, isa=isa)
        assert got.dtype == dtype
        if n <= 1025:  # the Python model is slow; longer rows: the plain row below
            np.testing.assert_array_equal(
                _bits(got), _bits(half_vjp_model(y, dy, accurate=accurate)), f"{isa} n={n}"
            )
        unsure = np.max(y.astype(F64), axis=-1) < 0.5  # no entry >= 1/2: the plain formula
        plain = vjp(y[unsure].astype(np.float32), dy[unsure].astype(np.float32))
        np.testing.assert_array_equal(_bits(got[unsure]), _bits(plain.astype(dtype)), f"n={n}")


@pytest.mark.parametrize("dtype", HALVES)
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("accurate", FORMS)
def test_half_within_derived_bounds_of_float64(isa, dtype, accurate):
    vjp = functools.partial(native.softmax_vjp, accurate=accurate)
    # Against float64 (long double) references of the same half inputs: one rounding to the half
    # dtype, |e| <= u_h |ref| (+ half its smallest subnormal), on top of the float32 error
    # (SOFTMAX_RTOL, vjp_bound in float32 with the half rule's u), itself rounded: (1 + u_h).
    u_h = _u(dtype)
    eta_h = float(ml_dtypes.finfo(dtype).smallest_subnormal) / 2
    tiny = float(ml_dtypes.finfo(dtype).smallest_normal)
    rng = np.random.default_rng(41)
    worst = {"softmax": 0.0, "vjp": 0.0}
    for n in (1, 7, 17, 33, 100, 1000, 5000):
        x, y, dy = half_inputs(rng, 4, n, dtype)
        ref = softmax_reference(x.astype(F64))
        got = native.softmax(x, isa=isa).astype(F64)
        bound = u_h * ref + (1 + u_h) * (SOFTMAX_RTOL[np.float32] * ref + SOFTMAX_ATOL[np.float32])
        assert_within(got, ref, bound + eta_h, f"softmax {isa} n={n}")
        normal = ref >= tiny  # relative error means little among subnormal results
        rel = np.abs(got - ref)[normal] / ref[normal]
        worst["softmax"] = max(worst["softmax"], float(np.max(rel, initial=0)))
        y64, dy64 = y.astype(F64), dy.astype(F64)
        ref = vjp_reference(y64.astype(np.float32), dy64.astype(np.float32))  # exact upcast
        got = vjp(y, dy, isa=isa).astype(F64)
        bound = u_h * np.abs(ref) + (1 + u_h) * vjp_bound(
            y64, dy64, np.float32, u=u_h, accurate=accurate
        )
        assert_within(got, ref, bound + eta_h, f"vjp {isa} n={n}")
        scale = np.sum(np.abs(y64 * dy64), axis=-1, keepdims=True) * np.abs(y64) + np.abs(ref)
        with np.errstate(invalid="ignore"):  # 0 / 0 where an entry and its scale vanish
            rel = (np.abs(got - ref) / scale)[scale >= tiny]
        worst["vjp"] = max(worst["vjp"], float(np.max(rel, initial=0)))
    ratios = {k: round(v / u_h, 3) for k, v in worst.items()}
    print(f"{isa} {np.dtype(dtype).name}: worst relative error / u_h {ratios}")


@pytest.mark.parametrize("dtype", HALVES)
@pytest.mark.parametrize("accurate", FORMS)
def test_half_bits_identical_at_16_offsets_every_thread_count_and_isa(dtype, accurate):
    vjp = functools.partial(native.softmax_vjp, accurate=accurate)
    rng = np.random.default_rng(42)
    for rows, n in [(3, 5), (3, 17), (4, 65), (5, 1000), (3, 1025), (2, 4099), (2, 8195)]:
        x, y, dy = half_inputs(rng, rows, n, dtype)
        vjp0 = vjp(y, dy, isa="scalar", threads=1)
        fwd0 = native.softmax(x, isa="scalar", threads=1)
        for isa in ISAS:
            for k in range(16):
                yo, dyo, xo = _at(y, k), _at(dy, (3 * k) % 16), _at(x, (7 * k) % 16)
                threads = 1 + k % 3
                out = _at(np.zeros_like(y), (5 * k) % 16)
                msg = f"{isa} {rows}x{n} offset {k} threads {threads}"
                vjp(yo, dyo, out=out, isa=isa, threads=threads)
                np.testing.assert_array_equal(_bits(out), _bits(vjp0), msg)
                native.softmax(xo, out=out, isa=isa, threads=threads)
                np.testing.assert_array_equal(_bits(out), _bits(fwd0), msg)


@pytest.mark.parametrize("dtype", HALVES)
@pytest.mark.parametrize("accurate", FORMS)
def test_half_streaming_variant_gives_the_scalar_bits(dtype, accurate):
    vjp = functools.partial(native.softmax_vjp, accurate=accurate)
    n = 1000
    rows = STREAM_BYTES // (3 * 2 * n) + 3
    rng = np.random.default_rng(43)
    _, y, dy = half_inputs(rng, rows, n, dtype)
    want = vjp(y, dy, isa="scalar", threads=1)
    unsure = np.max(y.astype(F64), axis=-1) < 0.5
    plain = vjp(y[unsure].astype(np.float32), dy[unsure].astype(np.float32))
    np.testing.assert_array_equal(_bits(want[unsure]), _bits(plain.astype(dtype)))
    for isa in ISAS:
        for off in (0, 3):
            got = vjp(_at(y, off), _at(dy, off + 1), isa=isa, threads=1 + off % 2)
            np.testing.assert_array_equal(_bits(got), _bits(want), f"{isa} offset {off}")


@pytest.mark.parametrize("dtype", HALVES)
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("accurate", FORMS)
def test_half_nan_inf_and_overflow_on_store(isa, dtype, accurate):
    vjp = functools.partial(native.softmax_vjp, accurate=accurate)
    # NaN and inf where the NumPy library (also float32, rounded once) puts them, for logits and
    # for the VJP's specials (confident rows too); a float32 result beyond the half range rounds
    # to inf on store; NaN stays NaN.
    for width in (5, 21, 70):
        x = np.zeros((len(SPECIAL_LOGITS), width))
        x[:, -5:] = SPECIAL_LOGITS
        x = x.astype(dtype)
        got, want = native.softmax(x, isa=isa), sg.softmax(x)
        np.testing.assert_array_equal(np.isnan(got.astype(F64)), np.isnan(want.astype(F64)))
        ok = ~np.isnan(want.astype(F64))
        np.testing.assert_allclose(got.astype(F64)[ok], want.astype(F64)[ok], rtol=2 * _u(dtype))
        for rows in (SPECIAL_VJP, CONFIDENT_SPECIAL[:-1]):
            y = np.zeros((len(rows), width))
            dy = np.zeros_like(y)
            y[:, -4:] = [r[0] for r in rows]
            dy[:, -4:] = [r[1] for r in rows]
            y, dy = y.astype(dtype), dy.astype(dtype)
            got = vjp(y, dy, isa=isa).astype(F64)
            with np.errstate(invalid="ignore", over="ignore"):
                want = sg.softmax_vjp(y, dy, accurate=accurate).astype(F64)
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want), f"{isa} w={width}")
            inf = np.isinf(want)
            np.testing.assert_array_equal(got[inf], want[inf], f"{isa} w={width}")
    big = float(ml_dtypes.finfo(dtype).max) / 2
    y = np.array([[big, 0.5]], dtype)
    dy = np.array([[big, -1.0]], dtype)  # y_0 * (dy_0 - <y, dy>): -big^3 in float32, or -inf
    got = vjp(y, dy, isa=isa)
    with np.errstate(over="ignore"):  # the cast to float16 overflows: that is the point
        want = vjp(y.astype(np.float32), dy.astype(np.float32)).astype(dtype)
    np.testing.assert_array_equal(_bits(got), _bits(want))
    assert np.isneginf(got.astype(F64)[0, 0]) and np.isnan(got.astype(F64)[0, 1]) is np.False_


@pytest.mark.parametrize("isa", ISAS)
def test_float16_softmax_of_70000_zeros(isa):
    # The sum (70000) is beyond float16's range; in float32 (double for the sum) it is not.
    got = native.softmax(np.zeros((2, 70000), np.float16), isa=isa)
    want = np.float16(1 / 70000)
    assert np.all(got == want), (got[0, :3], want)


def test_half_out_and_dtype_checks():
    y = np.full((2, 8), 0.125, np.float16)
    out = np.empty_like(y)
    assert native.softmax_vjp(y, y, out=out) is out
    with pytest.raises(TypeError, match=r"out must have dtype float16 like the inputs"):
        native.softmax_vjp(y, y, out=np.empty(y.shape, BF16))
    with pytest.raises(
        TypeError, match=r"y and dy must have the same dtype, got float16 and bfloat16"
    ):
        native.softmax_vjp(y, y.astype(BF16))
    swapped = y.astype(y.dtype.newbyteorder(">"))  # non-native byte order: copied, same values
    np.testing.assert_array_equal(native.softmax(swapped), native.softmax(y))
