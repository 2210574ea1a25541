"""softmax_grad.native's online kernels: softmax(algorithm="online"), logsumexp and the fused
softmax_cross_entropy, against references computed from the definitions.

As in tests/test_native.py (whose helpers these tests share): every ISA path usable on this CPU,
lengths through every vector tail and across the online kernels' blocks of ONLINE_BLOCK elements,
unaligned inputs and outputs, guard values around out, 1 and 2 threads, and bits that depend on
neither the address, nor the thread count, nor the path (a NaN's sign and payload aside). The
references are long double evaluations of the definitions, mpmath where long double itself would
cancel (confident rows), and SciPy's logsumexp and PyTorch's cross_entropy with autograd as
outside implementations. Tolerances are derived from the kernels' documented operations (see
``_sum_error`` and ``ce_rtol``), not tuned.
"""

from __future__ import annotations

import re

import mpmath
import numpy as np
import pytest
import scipy.special
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import softmax_grad as sg
from softmax_grad import native
from tests.test_native import (
    BF16,
    DTYPES,
    F64,
    GUARD,
    HALVES,
    ISAS,
    LONG,
    SPECIAL_LOGITS,
    _at,
    _gamma,
    _guarded_out,
    _u,
    assert_softmax_close,
    assert_within,
    tail_lengths,
    threads_as_asked,  # noqa: F401 (the autouse fixture: threads=2 really starts a thread)
)

BLOCK = native.ONLINE_BLOCK
# Row lengths around and across the online blocks: one block (short of full, and full), a full
# block and one element, three full blocks and a tail.
BLOCK_LENGTHS = (BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 5)
# Rows longer than this keep no buffer of their exponentials and compute them again from x
# (SG_ONLINE_ROW_MAX in csrc/kernels_simd.h).
ROW_MAX = 1 << 18
# A thread's block of rows with more output bytes than this is written with non-temporal stores
# (SG_ONLINE_STREAM_BYTES).
ONLINE_STREAM_BYTES = 4 << 20
# The forward pass's exp is accurate to "a few ulps" of its dtype (native.softmax's docstring):
# this many units of roundoff.
EXP_ULPS = 4
U64 = 2.0**-53
NAN, INF = np.nan, np.inf


def _sum_error(n, dtype) -> float:
    """A bound on the relative error of a row's online sum Z = sum_j exp(x_j - h): each term's
    exp in ``dtype`` (EXP_ULPS u), the double sum of each block in kernels_sum.h's order
    (gamma_k, k = summation_depth(n, float64)), and per block a rescaling by a float64 exp and a
    product (EXP_ULPS + 2 units of 2^-53)."""
    blocks = -(-n // BLOCK)
    depth = native.summation_depth(n, np.float64)
    return EXP_ULPS * _u(dtype) + _gamma(depth + 1, np.float64) + blocks * (EXP_ULPS + 2) * U64


def ce_rtol(n, dtype) -> float:
    """Relative error bound of the fused cross-entropy's loss and of each dlogits entry:
    loss = log1p(Z'/e_k) (or (h - x_k) + log Z), dlogits_j = e_j (f g / Z), dlogits_k = -g Z'/Z.
    Two sums (Z' and Z) and one more exp, each within _sum_error / EXP_ULPS u, then at most three
    roundings to ``dtype`` and a few in double."""
    return 2 * _sum_error(n, dtype) + EXP_ULPS * _u(dtype) + 3 * _u(dtype) + 8 * U64


def _untouched(buf, off=0) -> bool:
    """Whether _guarded_out's buffer still holds its sentinel (-12345.5 rounded to the dtype)
    in the GUARD elements after out and the GUARD + off before it."""
    sentinel = buf.dtype.type(-12345.5)
    return bool(np.all(buf[: GUARD + off] == sentinel) and np.all(buf[-GUARD:] == sentinel))


def assert_same_bits(got, want, msg=""):
    """The same bits at every element, except that a NaN only has to be a NaN (its sign and
    payload are the hardware's: see softmax_grad.native's docstring). -0 and +0 differ."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape, msg
    nan = np.isnan(got.astype(F64))
    np.testing.assert_array_equal(nan, np.isnan(want.astype(F64)), err_msg=f"NaN {msg}")
    view = {2: np.uint16, 4: np.uint32, 8: np.uint64}[got.itemsize]
    differ = (got.view(view) != want.view(view)) & ~nan
    if differ.any():
        where = tuple(int(i) for i in np.argwhere(differ)[0])
        raise AssertionError(
            f"{msg}: {int(differ.sum())} elements differ, first at {where}: "
            f"{got[where]!r} != {want[where]!r}"
        )


def increasing_rows(rng, rows, n, dtype, top=60.0, scale=3.0):
    """Rows whose logits grow along the row (to ``top``) plus noise: the maximum sits in the
    last block, so every block raises the running maximum and the sum is rescaled each time."""
    x = rng.normal(scale=scale, size=(rows, n)) + np.linspace(0.0, top, n)
    return x.astype(dtype)


# ---- softmax(algorithm="online") -------------------------------------------------------------


def online(x, **kw):
    return native.softmax(x, algorithm="online", **kw)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa", ISAS)
def test_online_softmax_every_tail_length(isa, dtype):
    # One block: the multipass kernel's bits (native.softmax's docstring), and the reference.
    rng = np.random.default_rng(101)
    for n in tail_lengths(isa, dtype):
        x = rng.normal(scale=40, size=(3, n)).astype(dtype)  # entries down to subnormal y
        got = online(x, isa=isa, threads=1)
        assert got.dtype == dtype and got.shape == (3, n)
        assert_softmax_close(got, x, dtype, f"{isa} n={n}")
        assert_same_bits(got, native.softmax(x, algorithm="multipass", isa=isa), f"{isa} n={n}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("n", BLOCK_LENGTHS)
def test_online_softmax_across_blocks(isa, dtype, n):
    # Row 0: maximum in the last block (the sum rescaled at every block); row 1: maximum in the
    # first; row 2: a first block of -inf (a sum of 0 that is never rescaled) and the maximum
    # late; row 3: a late jump large enough that the early blocks' factor exp(h_b - h) is
    # subnormal in the dtype (their y underflow gradually); row 4: random.
    rng = np.random.default_rng(n)
    jump = 95.0 if dtype == np.float32 else 720.0
    x = np.empty((5, n))
    x[0] = increasing_rows(rng, 1, n, F64)[0]
    x[1] = increasing_rows(rng, 1, n, F64)[0][::-1]
    x[2] = increasing_rows(rng, 1, n, F64, top=20)[0]
    x[2, : min(n - 1, BLOCK)] = -INF
    x[3] = rng.normal(size=n)
    x[3, -1] = jump
    x[4] = rng.normal(scale=5, size=n)
    x = x.astype(dtype)
    got = online(x, isa=isa, threads=2)
    assert_softmax_close(got, x, dtype, f"{isa} n={n}")
    assert np.all(got[2, : min(n - 1, BLOCK)] == 0)
    if n <= BLOCK:
        assert_same_bits(got, native.softmax(x, algorithm="multipass", isa=isa), f"n={n}")
    for threads in (1, 3):
        assert_same_bits(online(x, isa=isa, threads=threads), got, f"{isa} threads={threads}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa", ISAS)
def test_online_softmax_special_values_match_numpy_formula(isa, dtype):
    # NaN, +inf, masks and all -inf rows, in the vector body, the tail, and in a late or an early
    # block of a multi-block row.
    for width in (5, 21, 70, BLOCK + 7, 2 * BLOCK + 9):
        for at_end in (True, False):
            x = np.zeros((len(SPECIAL_LOGITS), width), dtype)
            if at_end:
                x[:, -5:] = SPECIAL_LOGITS
            else:
                x[:, :5] = SPECIAL_LOGITS
            got = online(x, isa=isa)
            want = sg.softmax(x)  # the NumPy formula, same dtype
            msg = f"{isa} w={width} at_end={at_end}"
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=msg)
            assert_softmax_close(got, x, dtype, msg)


@pytest.mark.parametrize("dtype", HALVES)
@pytest.mark.parametrize("isa", ISAS)
def test_online_half_is_float32_online_rounded_once(isa, dtype):
    # Computed in float32 and rounded once on store: the float32 online call on the upcast
    # rows, rounded by ml_dtypes / NumPy. Lengths through the tails and across blocks.
    rng = np.random.default_rng(102)
    for n in sorted({*range(1, 34), 63, 65, *BLOCK_LENGTHS, 2 * BLOCK + 1}):
        x = increasing_rows(rng, 2, n, dtype, top=8.0, scale=2.0)
        got = online(x, isa=isa)
        assert got.dtype == dtype
        want = online(x.astype(np.float32), isa=isa).astype(dtype)
        assert_same_bits(got, want, f"{isa} n={n}")
        if n <= BLOCK:
            assert_same_bits(got, native.softmax(x, isa=isa), f"multipass {isa} n={n}")
    for width in (5, 70, BLOCK + 7):
        x = np.zeros((len(SPECIAL_LOGITS), width))
        x[:, -5:] = SPECIAL_LOGITS
        x = x.astype(dtype)
        got = online(x, isa=isa)
        want = online(x.astype(np.float32), isa=isa).astype(dtype)
        assert_same_bits(got, want, f"specials {isa} w={width}")


@pytest.mark.parametrize("isa", ISAS)
def test_online_row_beyond_the_row_buffer_recomputes(isa):
    # A row longer than SG_ONLINE_ROW_MAX keeps only one block's exponentials and computes
    # y = exp(x - h) / Z again from x: the reference still holds, for float32 and a float16 row
    # (its float32 call rounded once), at any address, and for logsumexp and the cross-entropy
    # of the same row.
    n = ROW_MAX + BLOCK + 3
    rng = np.random.default_rng(103)
    x = increasing_rows(rng, 1, n, np.float32, top=40.0)
    got = online(x, isa=isa)
    assert_softmax_close(got, x, np.float32, f"{isa} n={n}")
    assert_same_bits(online(_at(x, 3), isa=isa), got, "offset 3")
    h = x.astype(np.float16)
    assert_same_bits(online(h, isa=isa), online(h.astype(np.float32), isa=isa).astype(np.float16))
    # logsumexp and the cross-entropy take the same path
    assert_lse_close(native.logsumexp(x, isa=isa), x, np.float32, f"{isa} n={n}")
    ce = native.softmax_cross_entropy(x, np.array([n - 2]), isa=isa)
    loss, dl = ce_reference(x, np.array([n - 2]), None)
    assert_ce_close(ce, loss, dl, np.float32, f"{isa} n={n}")


@pytest.mark.parametrize("dtype", (*DTYPES, *HALVES))
@pytest.mark.parametrize("isa", ISAS)
def test_online_large_calls_stream_with_the_same_bits(isa, dtype):
    # More than ONLINE_STREAM_BYTES of output per thread: y is written with non-temporal stores
    # after a head that aligns out. Any offset of x and out, 1 and 2 threads: the bits of the
    # same rows computed 8 at a time (in cache), and nothing written outside out.
    itemsize = np.dtype(dtype).itemsize
    rng = np.random.default_rng(104)
    for n, x_off, out_off in [(1000, 0, 1), (BLOCK + 905, 3, 5)]:
        rows = 2 * ONLINE_STREAM_BYTES // (itemsize * n) + 3
        x = _at(rng.normal(scale=4, size=(rows, n)).astype(dtype), x_off)
        parts = np.concatenate([online(x[k : k + 8], isa=isa) for k in range(0, rows, 8)])
        for threads in (1, 2):
            buf, out = _guarded_out(rows * n + out_off, dtype)
            out = out[out_off:].reshape(rows, n)
            assert online(x, out=out, isa=isa, threads=threads) is out
            msg = f"{isa} n={n} threads={threads}"
            assert _untouched(buf, out_off), msg
            assert_same_bits(out, parts, msg)
        if dtype in DTYPES:
            sample = slice(0, rows, 61)
            assert_softmax_close(parts[sample], x[sample], dtype, f"{isa} n={n}")


@pytest.mark.parametrize("dtype", (*DTYPES, *HALVES))
def test_online_bits_identical_at_16_offsets_every_thread_count_and_isa(dtype):
    # Inputs and out at 16 element offsets each, 1 to 3 threads, every ISA: the scalar path's
    # bits; out inside a guarded buffer.
    rng = np.random.default_rng(105)
    for rows, n in [(3, 5), (3, 33), (4, 65), (5, 1000), (2, BLOCK + 3), (2, 2 * BLOCK + 37)]:
        x = increasing_rows(rng, rows, n, dtype, top=20.0)
        want = online(x, isa="scalar", threads=1)
        for isa in ISAS:
            for k in range(16):
                threads = 1 + k % 3
                buf, out = _guarded_out(rows * n + (5 * k) % 16, dtype)
                out = out[(5 * k) % 16 :].reshape(rows, n)
                msg = f"{isa} {rows}x{n} offset {k} threads {threads}"
                online(_at(x, k), out=out, isa=isa, threads=threads)
                assert _untouched(buf, (5 * k) % 16), msg
                assert_same_bits(out, want, msg)


def test_online_argument_checks():
    x = np.zeros((2, 5))
    with pytest.raises(ValueError, match=r"unknown algorithm='two-pass'; allowed: None, 'online'"):
        native.softmax(x, algorithm="two-pass")
    with pytest.raises(ValueError, match=r"out must not overlap the input x"):
        online(x, out=x)
    with pytest.raises(TypeError, match=r"out must have dtype float64 like the inputs"):
        online(x, out=np.empty((2, 5), np.float32))
    with pytest.raises(ValueError, match=r"unknown isa='sse2'"):
        online(x, isa="sse2")
    with pytest.raises(ValueError, match=r"threads=0 is not allowed"):
        online(x, threads=0)
    for shape in [(0,), (0, 5), (3, 0)]:
        assert online(np.zeros(shape, np.float32)).shape == shape
    # strided and byte-swapped inputs are copied: the same bits
    rng = np.random.default_rng(106)
    x = rng.normal(size=(4, 3 * BLOCK)).astype(np.float32)
    want = online(x)
    assert_same_bits(online(np.repeat(x, 2, axis=1)[:, ::2]), want)
    assert_same_bits(online(x.astype(">f4")), want)


# ---- logsumexp -----------------------------------------------------------------------------


def lse_reference(x) -> np.ndarray:
    """log sum_j exp(x_j) in long double from the definition, shifted by a finite maximum."""
    x = np.asarray(x, LONG)
    m = np.max(x, axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    return (m + np.log(np.sum(np.exp(x - m), axis=-1, keepdims=True)))[..., 0]


def lse_bound(x, dtype) -> np.ndarray:
    """|computed - exact| for lse = h + log Z (h = max, Z's relative error _sum_error): Z's error
    (times 1.01 for log(1 + e)), double roundings of log Z and of the sum, and the rounding to
    ``dtype``."""
    x = np.asarray(x, F64)
    n = x.shape[-1]
    h = np.abs(np.max(x, axis=-1))
    lse = np.abs(np.asarray(lse_reference(x), F64))
    return 1.01 * _sum_error(n, dtype) + 2 * U64 * (lse + h) + _u(dtype) * lse


def assert_lse_close(got, x, dtype, msg=""):
    assert_within(got, np.asarray(lse_reference(x), F64), lse_bound(x, dtype), msg)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa", ISAS)
def test_logsumexp_every_tail_length_and_across_blocks(isa, dtype):
    rng = np.random.default_rng(111)
    for n in [*tail_lengths(isa, dtype), *BLOCK_LENGTHS]:
        x = increasing_rows(rng, 3, n, dtype, top=30.0)
        x[1] = rng.normal(scale=10, size=n)
        x[2] = -x[0]  # the maximum in the first block
        got = native.logsumexp(x, isa=isa, threads=1)
        assert got.dtype == dtype and got.shape == (3,)
        assert_lse_close(got, x, dtype, f"{isa} n={n}")
        assert_same_bits(native.logsumexp(x, isa=isa, threads=2), got, f"{isa} n={n}")
        # SciPy's logsumexp, an outside implementation, in float64
        want = scipy.special.logsumexp(x.astype(F64), axis=-1)
        np.testing.assert_allclose(got, want, rtol=2 * _u(dtype) + 1e-13, atol=1e-13)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa", ISAS)
def test_logsumexp_special_values(isa, dtype):
    rows = [
        ([0.0, 1.0, 2.0, 3.0, 4.0], None),
        ([-INF] * 5, -INF),  # the empty sum's log
        ([0.0, INF, 1.0, 2.0, 3.0], INF),
        ([0.0, NAN, 1.0, 2.0, 3.0], NAN),
        ([INF, NAN, 0.0, 0.0, 0.0], NAN),
        ([INF, -INF, 0.0, 0.0, 0.0], INF),
        ([-INF, 0.0, -INF, 1.0, -INF], None),  # masking: the finite ones' lse
        ([-INF, NAN, -INF, -INF, -INF], NAN),
    ]
    for width in (5, 21, 70, BLOCK + 7, 2 * BLOCK + 9):
        for at_end in (True, False):
            # -inf around the specials (an all -inf row stays one), zeros around the first row
            x = np.full((len(rows), width), -INF)
            x[0] = 0
            for r, (vals, _) in enumerate(rows):
                if at_end:
                    x[r, -5:] = vals
                else:
                    x[r, :5] = vals
            x = x.astype(dtype)
            got = native.logsumexp(x, isa=isa)
            msg = f"{isa} w={width} at_end={at_end}"
            for r, (_, special) in enumerate(rows):
                if special is None:
                    assert_lse_close(got[r : r + 1], x[r : r + 1], dtype, msg)
                elif np.isnan(special):
                    assert np.isnan(got[r]), msg
                else:
                    assert got[r] == special, msg
            # SciPy agrees on every special (and NaN-ness)
            want = scipy.special.logsumexp(x.astype(F64), axis=-1)
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=msg)
            inf = np.isinf(want)
            np.testing.assert_array_equal(got[inf], want[inf], err_msg=msg)
    assert native.logsumexp(np.zeros(0, dtype)) == -INF  # n = 0
    np.testing.assert_array_equal(native.logsumexp(np.zeros((3, 0), dtype)), [-INF] * 3)
    assert native.logsumexp(np.zeros((0, 4), dtype)).shape == (0,)


@pytest.mark.parametrize("dtype", DTYPES)
def test_logsumexp_shapes_out_offsets_threads_and_isas(dtype):
    # (..., n) -> (...); out inside a guarded buffer at several offsets; inputs at 16 offsets;
    # the scalar path's bits everywhere.
    rng = np.random.default_rng(112)
    for shape in [(2, 3, 4, 37), (7, 1), (3, BLOCK + 1), (40,)]:
        x = rng.normal(scale=6, size=shape).astype(dtype)
        want = native.logsumexp(x, isa="scalar", threads=1)
        assert want.shape == shape[:-1]
        assert_lse_close(want.reshape(-1), x.reshape(-1, shape[-1]), dtype, f"{shape}")
        for isa in ISAS:
            for k in range(0, 16, 3):
                size = int(np.prod(shape[:-1]))
                buf, out = _guarded_out(size + k % 4, dtype)
                out = out[k % 4 :].reshape(shape[:-1])
                threads = 1 + k % 2
                msg = f"{isa} {shape} offset {k} threads {threads}"
                assert native.logsumexp(_at(x, k), out=out, isa=isa, threads=threads) is out
                assert _untouched(buf, k % 4), msg
                assert_same_bits(out, want, msg)


def test_logsumexp_argument_checks():
    x = np.zeros((2, 5))
    for dt, name in ((np.float16, "float16"), (BF16, "bfloat16"), (np.int64, "int64")):
        with pytest.raises(
            TypeError, match=rf"x must be a float32 or float64 array, got dtype {name}"
        ):
            native.logsumexp(x.astype(dt))
    with pytest.raises(ValueError, match=r"x must have at least one dimension"):
        native.logsumexp(np.float64(1.0))
    with pytest.raises(ValueError, match=r"out: out must have shape \(2,\) like the inputs"):
        native.logsumexp(x, out=np.empty(3))
    with pytest.raises(TypeError, match=r"out: out must have dtype float64"):
        native.logsumexp(x, out=np.empty(2, np.float32))
    with pytest.raises(ValueError, match=r"out: out must not overlap the input x"):
        native.logsumexp(x, out=x.reshape(-1)[:2])
    with pytest.raises(ValueError, match=r"out: out must be C-contiguous"):
        native.logsumexp(x, out=np.empty(4)[::2])
    with pytest.raises(ValueError, match=r"unknown isa='avx3'"):
        native.logsumexp(x, isa="avx3")
    with pytest.raises(ValueError, match=r"threads=-1 is not allowed"):
        native.logsumexp(x, threads=-1)
    with pytest.raises(TypeError, match=r"threads must be None or an int"):
        native.logsumexp(x, threads=1.5)


# ---- softmax_cross_entropy ----------------------------------------------------------------------


def ce_reference(x, labels, grad, ignore_index=-100):
    """From the definition in long double: loss_r = lse(x_r) - x_{r,k}, dlogits_r = g_r
    (softmax(x_r) - e_k) (g_r = 1 without grad); loss 0 and dlogits 0 for ignored rows."""
    x = np.asarray(x, LONG)
    labels = np.asarray(labels)
    ignored = labels == ignore_index
    k = np.where(ignored, 0, labels)[..., None]
    g = np.ones(labels.shape, LONG) if grad is None else np.asarray(grad, LONG)
    m = np.max(x, axis=-1, keepdims=True)
    e = np.exp(x - m)
    z = np.sum(e, axis=-1, keepdims=True)
    loss = (m + np.log(z) - np.take_along_axis(x, k, axis=-1))[..., 0]
    onehot = np.zeros_like(x)
    np.put_along_axis(onehot, k, 1, axis=-1)
    dl = g[..., None] * (e / z - onehot)
    return np.where(ignored, 0, loss), np.where(ignored[..., None], 0, dl)


def assert_ce_close(got, loss, dlogits, dtype, msg=""):
    """loss and dlogits each within ce_rtol relative (dlogits: plus the underflow allowance of
    a result below the dtype's smallest normal, scaled by the row's gradient)."""
    n = got.dlogits.shape[-1]
    rtol = ce_rtol(n, dtype)
    eta = float(np.finfo(dtype).smallest_subnormal)
    gl, dl = np.asarray(loss, F64), np.asarray(dlogits, F64)
    np.testing.assert_allclose(got.loss, gl, rtol=rtol, atol=0, err_msg=f"loss {msg}")
    scale = np.max(np.abs(dl), axis=-1, keepdims=True)  # |g| (1 - y_k) and more
    assert_within(got.dlogits, dl, rtol * np.abs(dl) + 2 * eta * (1 + scale), f"dlogits {msg}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa", ISAS)
def test_cross_entropy_every_tail_length_and_across_blocks(isa, dtype):
    # Labels at 0, n - 1, in a late block and at random; gradients random, 0 and negative.
    rng = np.random.default_rng(121)
    for n in [*tail_lengths(isa, dtype), *BLOCK_LENGTHS]:
        x = rng.normal(scale=3, size=(5, n))
        x[3] = increasing_rows(rng, 1, n, F64, top=30.0)[0]  # the maximum late
        x = x.astype(dtype)
        labels = np.array([0, n - 1, rng.integers(0, n), max(n - 3, 0), n // 2])
        grad = np.array([1.5, -0.75, 0.0, 1.0, -2.0], dtype)
        got = native.softmax_cross_entropy(x, labels, grad, isa=isa, threads=1)
        assert got.loss.dtype == dtype and got.loss.shape == (5,)
        assert got.dlogits.dtype == dtype and got.dlogits.shape == (5, n)
        assert_ce_close(got, *ce_reference(x, labels, grad), dtype, f"{isa} n={n}")
        again = native.softmax_cross_entropy(x, labels, grad, isa=isa, threads=2)
        assert_same_bits(again.loss, got.loss, f"{isa} n={n}")
        assert_same_bits(again.dlogits, got.dlogits, f"{isa} n={n}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa", ISAS)
def test_cross_entropy_against_pytorch(isa, dtype):
    # torch.nn.functional.cross_entropy(reduction="none") and autograd (float64) as an outside
    # oracle: per-row losses, and the gradient of sum_r g_r loss_r, ignored rows included.
    rng = np.random.default_rng(122)
    rtol = 4 * ce_rtol(BLOCK + 1, dtype) + 1e-14  # torch's float64 y_k - 1 has its own rounding
    for n, ignore_index in [(7, -100), (33, 3), (1000, -1), (BLOCK + 1, -100)]:
        rows = 6
        x = rng.normal(scale=3, size=(rows, n)).astype(dtype)
        labels = rng.integers(0, n, size=rows)
        labels[1] = ignore_index
        grad = rng.normal(size=rows).astype(dtype)
        xt = torch.tensor(x.astype(F64), requires_grad=True)
        loss_t = F.cross_entropy(
            xt, torch.tensor(labels), reduction="none", ignore_index=ignore_index
        )
        loss_t.backward(torch.tensor(grad.astype(F64)))
        for threads in (1, 2):
            got = native.softmax_cross_entropy(
                x, labels, grad, ignore_index=ignore_index, isa=isa, threads=threads
            )
            msg = f"{isa} n={n} threads={threads}"
            np.testing.assert_allclose(got.loss, loss_t.detach().numpy(), rtol=rtol, err_msg=msg)
            np.testing.assert_allclose(
                got.dlogits, xt.grad.numpy(), rtol=rtol, atol=1e-300, err_msg=msg
            )
    # every row ignored: torch's losses and gradients are all 0, and so are these
    x = rng.normal(size=(3, 9)).astype(dtype)
    got = native.softmax_cross_entropy(x, np.full(3, -100), isa=isa)
    xt = torch.tensor(x.astype(F64), requires_grad=True)
    loss_t = F.cross_entropy(xt, torch.full((3,), -100), reduction="none")
    loss_t.sum().backward()
    np.testing.assert_array_equal(got.loss, loss_t.detach().numpy())
    np.testing.assert_array_equal(got.dlogits, xt.grad.numpy())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa", ISAS)
def test_cross_entropy_grad_none_ones_zero_and_negative(isa, dtype):
    rng = np.random.default_rng(123)
    for n in (3, 70, BLOCK + 9):
        x = rng.normal(scale=3, size=(4, n)).astype(dtype)
        labels = rng.integers(0, n, size=4)
        plain = native.softmax_cross_entropy(x, labels, isa=isa)
        ones = native.softmax_cross_entropy(x, labels, np.ones(4), isa=isa)
        assert_same_bits(ones.loss, plain.loss)
        assert_same_bits(ones.dlogits, plain.dlogits)
        # integer gradients are cast to the logits' dtype
        assert_same_bits(
            native.softmax_cross_entropy(x, labels, [1, 1, 1, 1], isa=isa).dlogits, plain.dlogits
        )
        g = np.array([0.5, -0.5, 3.0, -3.0], dtype)
        scaled = native.softmax_cross_entropy(x, labels, g, isa=isa)
        assert_same_bits(scaled.loss, plain.loss)  # the loss does not depend on the gradient
        flipped = native.softmax_cross_entropy(x, labels, -g, isa=isa)
        assert_same_bits(flipped.dlogits, -scaled.dlogits)  # every rounding is sign-symmetric
        zero = native.softmax_cross_entropy(x, labels, np.zeros(4), isa=isa)
        assert np.all(zero.dlogits == 0) and np.all(np.isfinite(zero.dlogits))
        assert_same_bits(zero.loss, plain.loss)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa", ISAS)
def test_cross_entropy_ignored_rows(isa, dtype):
    rng = np.random.default_rng(124)
    for n in (5, 70, BLOCK + 3):
        x = rng.normal(size=(6, n)).astype(dtype)
        x[2, 1] = NAN  # an ignored row is not read: its NaN goes nowhere
        for ignore_index in (-100, 3, n - 1, 10**12):
            labels = rng.integers(0, n, size=6)
            labels[[0, 2, 5]] = ignore_index
            kept = np.array([1, 3, 4])
            labels[kept] = np.where(labels[kept] == ignore_index, 0, labels[kept])
            got = native.softmax_cross_entropy(x, labels, ignore_index=ignore_index, isa=isa)
            msg = f"{isa} n={n} ignore_index={ignore_index}"
            assert np.all(got.loss[[0, 2, 5]] == 0) and np.all(got.dlogits[[0, 2, 5]] == 0), msg
            alone = native.softmax_cross_entropy(x[kept], labels[kept], isa=isa)
            assert_same_bits(got.loss[kept], alone.loss, msg)
            assert_same_bits(got.dlogits[kept], alone.dlogits, msg)
            assert_ce_close(alone, *ce_reference(x[kept], labels[kept], None), dtype, msg)
        every = native.softmax_cross_entropy(x, np.full(6, 7), ignore_index=7, isa=isa)
        assert np.all(every.loss == 0) and np.all(every.dlogits == 0)


def _ce_mpmath(x, k, g=1.0):
    """mpmath at 60 digits: the loss lse(x) - x_k and the row's dlogits g (y - e_k), with
    y_k - 1 = -sum_{j != k} y_j (no cancellation)."""
    with mpmath.workdps(60):
        xk = mpmath.mpf(float(x[k]))
        e = [mpmath.exp(mpmath.mpf(float(v)) - xk) for v in x]  # e^{x_j - x_k}
        others = mpmath.fsum(v for j, v in enumerate(e) if j != k)
        z = 1 + others
        dl = [g * v / z for v in e]
        dl[k] = -g * others / z
        return float(mpmath.log1p(others)), np.array([float(v) for v in dl])


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_confident_rows_accurate_from_mpmath(dtype):
    # The true class 0..60 above the rest: the loss ~ e^-gap and dlogits at the true class,
    # -g (1 - y_k), are small and must keep their relative accuracy (summed apart from Z); so
    # must every other entry. Also a true class far below the maximum (loss ~ gap: the
    # (h - x_k) + log Z branch) and a label in the late block of a long row.
    u = _u(dtype)
    tol = 8 * u  # a few ulps: two exps of EXP_ULPS/2 ulps measured, and the roundings
    rng = np.random.default_rng(125)
    worst = 0.0
    for n, k in [(2, 0), (7, 6), (65, 31), (BLOCK + 100, BLOCK + 50)]:
        for gap in (0.0, 5.0, 15.0, 30.0, 45.0, 60.0, -25.0, -60.0):
            x = rng.normal(scale=0.5, size=n)
            x[k] = np.max(np.delete(x, k)) + gap
            x = x.astype(dtype)
            loss, dl = _ce_mpmath(x, k, -1.5)
            for isa in ISAS:
                got = native.softmax_cross_entropy(x[None], np.array([k]), [-1.5], isa=isa)
                rel_loss = abs(float(got.loss[0]) - loss) / loss
                rel_k = abs(float(got.dlogits[0, k]) - dl[k]) / abs(dl[k])
                normal = np.abs(dl) >= np.finfo(dtype).smallest_normal
                rel = np.abs(got.dlogits[0].astype(F64) - dl)[normal] / np.abs(dl[normal])
                worst = max(worst, rel_loss / u, rel_k / u, float(np.max(rel)) / u)
                msg = f"{isa} n={n} k={k} gap={gap}"
                assert rel_loss <= tol, f"loss {msg}: {rel_loss / u:.2f} u"
                assert rel_k <= tol, f"dlogits[k] {msg}: {rel_k / u:.2f} u"
                assert np.all(rel <= tol), f"dlogits {msg}: {np.max(rel) / u:.2f} u"
    print(f"{np.dtype(dtype).name}: worst relative error {worst:.2f} u (allowed {tol / u:.0f} u)")


CE_SPECIAL = [
    # (logit row, label)
    ([0.0, 1.0, 2.0, 3.0, 4.0], 1),
    ([NAN, 1.0, 2.0, 3.0, 4.0], 1),  # a NaN elsewhere: NaN row
    ([0.0, NAN, 2.0, 3.0, 4.0], 1),  # the true class NaN
    ([INF, 1.0, 2.0, 3.0, 4.0], 1),  # +inf elsewhere: no softmax, NaN row
    ([0.0, INF, 2.0, 3.0, 4.0], 1),  # +inf at the true class: NaN row too
    ([-INF, 1.0, -INF, 3.0, 4.0], 1),  # masking: exactly 0 where -inf
    ([0.0, -INF, 2.0, 3.0, 4.0], 1),  # the true class masked: loss inf, dlogits_k = -g
    ([-INF, -INF, -INF, -INF, -INF], 1),  # no defined softmax: NaN row
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa", ISAS)
def test_cross_entropy_special_values_match_the_numpy_library(isa, dtype):
    # Where softmax_grad.softmax_cross_entropy (NumPy, same dtype) puts NaN and inf, in the
    # vector body, a tail, and a late block; finite values within both computations' bounds.
    g = np.float64(-2.0)
    for width in (5, 21, 70, BLOCK + 7):
        x = np.zeros((len(CE_SPECIAL), width))
        x[:, -5:] = [row for row, _ in CE_SPECIAL]
        x = x.astype(dtype)
        labels = np.array([width - 5 + k for _, k in CE_SPECIAL])
        grad = np.full(len(CE_SPECIAL), g, dtype)
        got = native.softmax_cross_entropy(x, labels, grad, isa=isa)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            loss, dl = sg.softmax_cross_entropy(x, labels, reduction="none")
        dl = dl * g
        msg = f"{isa} w={width}"
        np.testing.assert_array_equal(np.isnan(got.loss), np.isnan(loss), err_msg=msg)
        np.testing.assert_array_equal(np.isnan(got.dlogits), np.isnan(dl), err_msg=msg)
        for a, b in ((got.loss, loss), (got.dlogits, dl)):
            inf = np.isinf(b)
            np.testing.assert_array_equal(a[inf], b[inf], err_msg=msg)
            ok = np.isfinite(b)
            np.testing.assert_allclose(a[ok], b[ok], rtol=1e-5 if dtype == np.float32 else 1e-12)
        assert np.isposinf(got.loss[6]) and got.dlogits[6, -4] == -g  # y_k = 0 exactly
        assert np.all(got.dlogits[5, [-5, -3]] == 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_bits_identical_at_offsets_every_thread_count_and_isa(dtype):
    rng = np.random.default_rng(126)
    for rows, n in [(3, 5), (4, 65), (5, 1000), (2, BLOCK + 3), (2, 2 * BLOCK + 37)]:
        x = increasing_rows(rng, rows, n, dtype, top=20.0)
        labels = rng.integers(0, n, size=rows)
        labels[0] = -100
        grad = rng.normal(size=rows).astype(dtype)
        want = native.softmax_cross_entropy(x, labels, grad, isa="scalar", threads=1)
        for isa in ISAS:
            for k in range(0, 16, 3):
                threads = 1 + k % 2
                got = native.softmax_cross_entropy(
                    _at(x, k), _at(labels, k % 5), _at(grad, k % 7), isa=isa, threads=threads
                )
                msg = f"{isa} {rows}x{n} offset {k} threads {threads}"
                assert_same_bits(got.loss, want.loss, msg)
                assert_same_bits(got.dlogits, want.dlogits, msg)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa", ISAS)
def test_cross_entropy_large_calls_stream_with_the_same_bits(isa, dtype):
    # dlogits beyond ONLINE_STREAM_BYTES per thread: non-temporal stores, then dlogits_k stored
    # over them; the bits of the same rows in small calls.
    rng = np.random.default_rng(127)
    n = 4099
    rows = 2 * ONLINE_STREAM_BYTES // (np.dtype(dtype).itemsize * n) + 3
    x = rng.normal(scale=4, size=(rows, n)).astype(dtype)
    labels = rng.integers(0, n, size=rows)
    labels[::17] = -100
    for threads in (1, 2):
        got = native.softmax_cross_entropy(x, labels, isa=isa, threads=threads)
        for k in range(0, rows, 97):
            part = native.softmax_cross_entropy(x[k : k + 8], labels[k : k + 8], isa=isa)
            assert_same_bits(got.loss[k : k + 8], part.loss, f"threads={threads} row {k}")
            assert_same_bits(got.dlogits[k : k + 8], part.dlogits, f"threads={threads} row {k}")


def test_cross_entropy_bad_labels_and_arguments():
    x = np.zeros((3, 5))
    ok = np.array([0, 1, 2])
    for labels, where, value, count in [
        ([0, 5, 2], "[1]", 5, 1),
        ([-1, 1, 2], "[0]", -1, 1),
        ([0, 1, -7], "[2]", -7, 1),
        ([9, 1, -100 + 1], "[0]", 9, 2),
    ]:
        with pytest.raises(
            ValueError,
            match=rf"labels{re.escape(where)} = {value} is not a class.*n = 5.*{count} label",
        ):
            native.softmax_cross_entropy(x, np.array(labels))
    with pytest.raises(ValueError, match=r"labels\[1, 0\] = 5 is not a class"):
        native.softmax_cross_entropy(np.zeros((2, 2, 5)), np.array([[0, 1], [5, 0]]))
    with pytest.raises(ValueError, match=r"labels\[0\] = -100 is not a class.*ignore_index = -1"):
        native.softmax_cross_entropy(x, np.array([-100, 0, 0]), ignore_index=-1)
    with pytest.raises(TypeError, match=r"labels must be an integer array, got dtype float64"):
        native.softmax_cross_entropy(x, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(TypeError, match=r"labels must be an integer array, got dtype bool"):
        native.softmax_cross_entropy(x, np.array([True, False, True]))
    with pytest.raises(
        ValueError, match=r"labels must have shape \(3,\) \(one per row of logits\)"
    ):
        native.softmax_cross_entropy(x, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"labels must have shape \(3,\)"):
        native.softmax_cross_entropy(x, ok[None])
    with pytest.raises(ValueError, match=r"grad must have shape \(3,\) \(one per row\)"):
        native.softmax_cross_entropy(x, ok, np.ones(4))
    with pytest.raises(TypeError, match=r"grad must be real numbers, got dtype complex128"):
        native.softmax_cross_entropy(x, ok, np.ones(3, complex))
    with pytest.raises(TypeError, match=r"ignore_index must be an int, got float"):
        native.softmax_cross_entropy(x, ok, ignore_index=-100.0)
    with pytest.raises(TypeError, match=r"ignore_index must be an int, got bool"):
        native.softmax_cross_entropy(x, ok, ignore_index=True)
    with pytest.raises(ValueError, match=r"ignore_index=.* does not fit in int64"):
        native.softmax_cross_entropy(x, ok, ignore_index=2**63)
    with pytest.raises(
        TypeError, match=r"logits must be a float32 or float64 array, got dtype float16"
    ):
        native.softmax_cross_entropy(x.astype(np.float16), ok)
    with pytest.raises(ValueError, match=r"logits must have at least one dimension"):
        native.softmax_cross_entropy(np.float64(0.0), 0)
    with pytest.raises(ValueError, match=r"unknown isa='neon2'"):
        native.softmax_cross_entropy(x, ok, isa="neon2")
    with pytest.raises(ValueError, match=r"threads=0 is not allowed"):
        native.softmax_cross_entropy(x, ok, threads=0)
    with pytest.raises(TypeError, match=r"threads must be None or an int"):
        native.softmax_cross_entropy(x, ok, threads="2")
    # one row (1-d logits, a scalar label) and empty calls
    one = native.softmax_cross_entropy(np.arange(5.0), 4)
    assert one.loss.shape == () and one.dlogits.shape == (5,)
    assert_ce_close(one, *ce_reference(np.arange(5.0), np.array(4), None), np.float64)
    empty = native.softmax_cross_entropy(np.zeros((0, 5)), np.zeros(0, np.int64))
    assert empty.loss.shape == (0,) and empty.dlogits.shape == (0, 5)
    no_classes = native.softmax_cross_entropy(np.zeros((2, 0)), np.full(2, -100))
    np.testing.assert_array_equal(no_classes.loss, [0.0, 0.0])
    with pytest.raises(ValueError, match=r"labels\[0\] = 0 is not a class.*n = 0"):
        native.softmax_cross_entropy(np.zeros((2, 0)), np.zeros(2, np.int64))


# ---- the C entry points: statuses, and nothing written on a refusal or outside the outputs -----


@pytest.mark.parametrize("dtype", DTYPES)
def test_c_cross_entropy_and_logsumexp_statuses_and_guards(dtype):
    ffi, lib = native._ffi, native._lib
    suffix = "f32" if dtype == np.float32 else "f64"
    ct = ffi.typeof("float *" if dtype == np.float32 else "double *")
    ce = getattr(lib, f"sg_softmax_cross_entropy_{suffix}")
    lse = getattr(lib, f"sg_logsumexp_{suffix}")
    rows, n = 4, 37
    rng = np.random.default_rng(131)
    x = rng.normal(size=(rows, n)).astype(dtype)
    grad = rng.normal(size=rows).astype(dtype)
    labels = np.array([0, n - 1, -100, 5], np.int64)
    ref = native.softmax_cross_entropy(x, labels, grad)
    assert lib.SG_BAD_LABEL == 6
    for off in range(4):  # the outputs inside guarded buffers, at element offsets 0..3
        lbuf, loss = _guarded_out(rows + off, dtype)
        dbuf, dl = _guarded_out(rows * n + off, dtype)
        loss, dl = loss[off:], dl[off:]
        px, pg, pl, pd = (ffi.from_buffer(ct, a) for a in (_at(x, off), _at(grad, off), loss, dl))
        plab = ffi.from_buffer("int64_t *", _at(labels, off))
        for isa in range(len(native.ALL_ISAS)):
            if not native._MASK >> isa & 1:
                continue
            for threads in (1, 2):
                assert ce(px, plab, pg, pl, pd, rows, n, -100, isa, threads) == lib.SG_OK
                assert _untouched(lbuf, off) and _untouched(dbuf, off)
                assert_same_bits(loss, ref.loss)
                assert_same_bits(dl.reshape(rows, n), ref.dlogits)
        # a bad label anywhere: SG_BAD_LABEL before anything is read or written
        for bad in (n, -1, -100):
            lbuf[...], dbuf[...] = -7.0, -7.0
            wrong = labels.copy()
            wrong[3] = bad
            ignore = -1 if bad == -100 else -100  # -100 is a bad label when it is not ignored
            plab_bad = ffi.from_buffer("int64_t *", wrong)
            status = ce(px, plab_bad, pg, pl, pd, rows, n, ignore, 0, 2)
            assert status == lib.SG_BAD_LABEL, (bad, status)
            assert np.all(lbuf == -7.0) and np.all(dbuf == -7.0), bad
    # the other statuses, before anything is written
    lbuf, loss = _guarded_out(rows, dtype)
    dbuf, dl = _guarded_out(rows * n, dtype)
    lbuf[...], dbuf[...] = -7.0, -7.0
    px, pg, pl, pd = (ffi.from_buffer(ct, a) for a in (x, grad, loss, dl))
    plab = ffi.from_buffer("int64_t *", labels)
    raw = np.zeros(8 * rows + 1, np.uint8)
    mis_lab = ffi.cast("int64_t *", int(ffi.cast("uintptr_t", ffi.from_buffer(raw))) + 1)
    assert ce(px, plab, pg, pl, pd, rows, n, -100, 7, 1) == lib.SG_BAD_ISA
    assert ce(px, plab, pg, pl, pd, rows, n, -100, 0, 0) == lib.SG_BAD_THREADS
    assert ce(px, ffi.NULL, pg, pl, pd, rows, n, -100, 0, 1) == lib.SG_BAD_POINTER
    assert ce(px, mis_lab, pg, pl, pd, rows, n, -100, 0, 1) == lib.SG_BAD_ALIGNMENT
    assert ce(px, plab, pg, pl, px + 3, rows, n, -100, 0, 1) == lib.SG_OVERLAP  # dx over x
    assert ce(px, plab, pg, pd + 5, pd, rows, n, -100, 0, 1) == lib.SG_OVERLAP  # loss in dx
    assert ce(px, plab, pg, pg + 1, pd, rows, n, -100, 0, 1) == lib.SG_OVERLAP  # loss on grad
    assert np.all(lbuf == -7.0) and np.all(dbuf == -7.0)
    assert lse(px, pl, rows, n, 0, 0) == lib.SG_BAD_THREADS
    assert lse(px, px + n, rows, n, 0, 1) == lib.SG_OVERLAP
    assert lse(px, ffi.NULL, rows, n, 0, 1) == lib.SG_BAD_POINTER
    assert lse(px, pl, rows, n, 7, 1) == lib.SG_BAD_ISA
    assert np.all(lbuf == -7.0)
    # grad NULL means ones; empty calls are fine whatever the pointers
    assert ce(px, plab, ffi.NULL, pl, pd, rows, n, -100, 0, 1) == lib.SG_OK
    assert_same_bits(loss, ref.loss)
    assert_same_bits(dl.reshape(rows, n), native.softmax_cross_entropy(x, labels).dlogits)
    assert ce(ffi.NULL, ffi.NULL, ffi.NULL, ffi.NULL, ffi.NULL, 0, n, -100, 0, 1) == lib.SG_OK
    assert lse(ffi.NULL, ffi.NULL, 0, n, 0, 1) == lib.SG_OK


def test_read_only_inputs_are_taken_and_never_written():
    rng = np.random.default_rng(132)
    x = rng.normal(size=(3, BLOCK + 5))
    labels = np.array([0, 1, 2])
    grad = np.ones(3)
    copies = [a.copy() for a in (x, labels, grad)]
    want = (online(x), native.logsumexp(x), native.softmax_cross_entropy(x, labels, grad))
    for a in (x, labels, grad):
        a.flags.writeable = False
    got = (online(x), native.logsumexp(x), native.softmax_cross_entropy(x, labels, grad))
    for a, b in zip((x, labels, grad), copies, strict=True):
        np.testing.assert_array_equal(a, b)
    assert_same_bits(got[0], want[0])
    assert_same_bits(got[1], want[1])
    assert_same_bits(got[2].dlogits, want[2].dlogits)


# ---- properties (hypothesis) ---------------------------------------------------------------------


@settings(max_examples=40)
@given(st.sampled_from(DTYPES), st.sampled_from(ISAS), st.data())
def test_property_cross_entropy_is_lse_minus_the_true_logit_and_y_minus_onehot(dtype, isa, data):
    # The fused kernel against the identities that define it, evaluated with the other online
    # kernels: loss = logsumexp(x) - x_k and dlogits = g (softmax(x) - e_k), within the sum of
    # both sides' bounds (ce_rtol, and lse_bound for logsumexp), -inf logits (masks) included.
    n = data.draw(st.integers(1, 70))
    rows = data.draw(st.integers(1, 4))
    finite = st.floats(-60, 60, width=32)
    x = data.draw(hnp.arrays(dtype, (rows, n), elements=finite | st.just(-np.inf)))
    labels = np.array(data.draw(st.lists(st.integers(0, n - 1), min_size=rows, max_size=rows)))
    grad = data.draw(hnp.arrays(dtype, rows, elements=st.floats(-4, 4, width=32)))
    true = (np.arange(rows), labels)
    x[true] = np.where(np.isinf(x[true]), 0, x[true])  # a finite true logit: a finite loss
    threads = data.draw(st.integers(1, 2))
    got = native.softmax_cross_entropy(x, labels, grad, isa=isa, threads=threads)
    lse = native.logsumexp(x, isa=isa).astype(F64)
    xk = x[true].astype(F64)
    rtol = ce_rtol(n, dtype)
    err = np.abs(got.loss.astype(F64) - (lse - xk))
    assert np.all(err <= rtol * np.abs(got.loss) + lse_bound(x, dtype) + 2 * _u(dtype) * np.abs(xk))
    y = online(x, isa=isa).astype(F64)
    onehot = np.zeros_like(y)
    onehot[true] = 1
    g = grad.astype(F64)[:, None]
    want = g * (y - onehot)
    # y's error (y_k's rounding near 1 included), then a rounding of g (y - e_k), with the
    # absolute half-ulps of results below the smallest normal (unscaled by g)
    eta = float(np.finfo(dtype).smallest_subnormal)
    bound = np.abs(g) * (2 * rtol * np.abs(y) + 4 * eta) + rtol * np.abs(want) + 2 * eta
    assert np.all(np.abs(got.dlogits - want) <= bound)
