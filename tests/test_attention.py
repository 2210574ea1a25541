"""softmax_grad.attention: naive and tiled single-head attention and their backward.

Oracles: central finite differences of the scalar <dO, O> (the naive backward), PyTorch autograd
of ``torch.nn.functional.scaled_dot_product_attention`` in float64 (both), and the definition
written out with NumPy in long double (the forward). The tiled functions are checked against the
naive ones, which those oracles check.

PyTorch's SDPA returns zeros for a query row whose keys are all masked (its ``_safe_softmax``,
pytorch/pytorch#133882), the library's convention; the tests compare those rows with SDPA and
also check the convention directly (zero output, lse = -inf, zero gradients, no NaN, no warning),
since a softmax of -inf scores written out in PyTorch gives NaN there.
"""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import softmax_grad as sg

LONG = np.longdouble


def make(rng, N_q, N_k, d, d_v, dtype=np.float64):
    Q = rng.normal(size=(N_q, d)).astype(dtype)
    K = rng.normal(size=(N_k, d)).astype(dtype)
    V = rng.normal(size=(N_k, d_v)).astype(dtype)
    dO = rng.normal(size=(N_q, d_v)).astype(dtype)
    return Q, K, V, dO


def masked(rng, N_q, N_k, empty_rows=(1, 4)):
    mask = rng.random((N_q, N_k)) < 0.6
    mask[list(empty_rows)] = False
    return mask


def keep_of(N_q, N_k, causal, mask):
    keep = np.ones((N_q, N_k), bool) if mask is None else mask.copy()
    if causal:
        keep &= np.arange(N_k)[None, :] <= np.arange(N_q)[:, None]
    return keep


def reference_forward(Q, K, V, keep):
    """The definition in long double: masked scores excluded, empty rows 0."""
    S = np.asarray(Q, LONG) @ np.asarray(K, LONG).T / np.sqrt(LONG(Q.shape[1]))
    S = np.where(keep, S, -np.inf)
    m = np.max(S, axis=1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    E = np.exp(S - m)
    Z = E.sum(axis=1, keepdims=True)
    P = E / np.where(Z == 0, 1, Z)
    return P @ np.asarray(V, LONG), P


# ---- naive forward and backward against independent oracles ------------------------------------


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("with_mask", [False, True])
def test_naive_forward_is_the_definition(causal, with_mask):
    rng = np.random.default_rng(1)
    Q, K, V, _ = make(rng, 13, 11, 6, 4)
    mask = masked(rng, 13, 11) if with_mask else None
    out, P = sg.attention(Q, K, V, causal=causal, mask=mask)
    want_out, want_P = reference_forward(Q, K, V, keep_of(13, 11, causal, mask))
    np.testing.assert_allclose(P, want_P.astype(float), rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(out, want_out.astype(float), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("with_mask", [False, True])
def test_naive_backward_matches_finite_differences(causal, with_mask):
    rng = np.random.default_rng(2)
    N_q, N_k, d, d_v = 5, 4, 3, 2
    Q, K, V, dO = make(rng, N_q, N_k, d, d_v)
    mask = masked(rng, N_q, N_k, empty_rows=(2,)) if with_mask else None
    out, P = sg.attention(Q, K, V, causal=causal, mask=mask)
    grads = sg.attention_vjp(Q, K, V, P, dO)

    def loss(Q, K, V):  # the scalar whose gradient is dQ, dK, dV: <dO, O>
        return float(np.sum(dO * sg.attention(Q, K, V, causal=causal, mask=mask).out))

    numerical = (
        sg.numerical_gradient(lambda q: loss(q, K, V), Q),
        sg.numerical_gradient(lambda k: loss(Q, k, V), K),
        sg.numerical_gradient(lambda v: loss(Q, K, v), V),
    )
    for name, g, g_num in zip(("dQ", "dK", "dV"), grads, numerical, strict=True):
        np.testing.assert_allclose(g, g_num, rtol=1e-7, atol=1e-9, err_msg=name)


def torch_sdpa(Q, K, V, dO, causal, mask):
    """PyTorch's output and autograd gradients, float64 (the oracle)."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    Qt, Kt, Vt = (torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (Q, K, V))
    attn_mask = None
    if mask is not None:
        attn_mask = torch.tensor(mask)
        if causal:  # SDPA refuses is_causal with attn_mask: combine them the same way
            attn_mask = attn_mask & torch.ones(mask.shape, dtype=torch.bool).tril()
    out = F.scaled_dot_product_attention(
        Qt, Kt, Vt, attn_mask=attn_mask, is_causal=causal and mask is None
    )
    out.backward(torch.tensor(dO, dtype=torch.float64))
    return [t.detach().numpy() for t in (out, Qt.grad, Kt.grad, Vt.grad)]


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("with_mask", [False, True])
@pytest.mark.parametrize("shape", [(17, 17, 8, 8), (9, 23, 5, 3), (31, 12, 4, 6)])
def test_naive_and_tiled_match_pytorch_sdpa(causal, with_mask, shape):
    rng = np.random.default_rng(3)
    N_q, N_k, d, d_v = shape
    Q, K, V, dO = make(rng, N_q, N_k, d, d_v)
    mask = masked(rng, N_q, N_k) if with_mask else None
    want = torch_sdpa(Q, K, V, dO, causal, mask)
    naive = sg.attention(Q, K, V, causal=causal, mask=mask)
    got_naive = [naive.out, *sg.attention_vjp(Q, K, V, naive.P, dO)]
    kw = dict(causal=causal, mask=mask, block_q=4, block_k=5)
    tiled = sg.tiled_attention(Q, K, V, **kw)
    got_tiled = [tiled.out, *sg.tiled_attention_vjp(Q, K, V, *tiled, dO, **kw)]
    for name, w, a, b in zip(("O", "dQ", "dK", "dV"), want, got_naive, got_tiled, strict=True):
        np.testing.assert_allclose(a, w, rtol=1e-12, atol=1e-13, err_msg=f"naive {name}")
        np.testing.assert_allclose(b, w, rtol=1e-12, atol=1e-13, err_msg=f"tiled {name}")


# ---- tiled against naive ------------------------------------------------------------------------


@pytest.mark.parametrize("blocks", [(1, 1), (3, 7), (8, 8), (16, 5), (64, 64), (100, 3)])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("with_mask", [False, True])
def test_tiled_equals_naive_for_any_block_sizes(blocks, causal, with_mask):
    rng = np.random.default_rng(4)
    N_q, N_k, d, d_v = 37, 29, 8, 5
    Q, K, V, dO = make(rng, N_q, N_k, d, d_v)
    mask = masked(rng, N_q, N_k) if with_mask else None
    naive = sg.attention(Q, K, V, causal=causal, mask=mask)
    g_naive = sg.attention_vjp(Q, K, V, naive.P, dO)
    kw = dict(causal=causal, mask=mask, block_q=blocks[0], block_k=blocks[1])
    tiled = sg.tiled_attention(Q, K, V, **kw)
    g_tiled = sg.tiled_attention_vjp(Q, K, V, tiled.out, tiled.lse, dO, **kw)
    np.testing.assert_allclose(tiled.out, naive.out, rtol=1e-12, atol=1e-14)
    keep = keep_of(N_q, N_k, causal, mask)
    with np.errstate(divide="ignore"):
        want_lse = np.log(np.sum(np.where(keep, np.exp(Q @ K.T / np.sqrt(d)), 0), axis=1))
    np.testing.assert_allclose(tiled.lse, want_lse, rtol=1e-13, atol=1e-14)
    for name, a, b in zip(("dQ", "dK", "dV"), g_tiled, g_naive, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13, err_msg=name)


def test_float32_stays_float32_and_is_close_to_float64():
    rng = np.random.default_rng(5)
    Q, K, V, dO = make(rng, 40, 33, 16, 8)
    mask = masked(rng, 40, 33)
    f32 = [a.astype(np.float32) for a in (Q, K, V, dO)]
    tiled = sg.tiled_attention(*f32[:3], mask=mask, block_q=16, block_k=7)
    grads = sg.tiled_attention_vjp(*f32[:3], *tiled, f32[3], mask=mask, block_q=16, block_k=7)
    naive = sg.attention(*f32[:3], mask=mask)
    naive_grads = sg.attention_vjp(*f32[:3], naive.P, f32[3])
    for got in (tiled.out, tiled.lse, *grads, naive.out, naive.P, *naive_grads):
        assert got.dtype == np.float32
    # The float64 results of the float32 inputs' values: the float32 functions' errors are a few
    # hundred u at these sizes (the inputs are exact in both)
    ref = sg.attention(*[a.astype(np.float64) for a in f32[:3]], mask=mask)
    ref_grads = sg.attention_vjp(*[a.astype(np.float64) for a in f32[:3]], ref.P, f32[3])
    tol = 1e-5
    for got, want in zip((tiled.out, *grads), (ref.out, *ref_grads), strict=True):
        assert np.max(np.abs(got - want)) <= tol * max(1.0, np.max(np.abs(want)))
    for got, want in zip((naive.out, *naive_grads), (ref.out, *ref_grads), strict=True):
        assert np.max(np.abs(got - want)) <= tol * max(1.0, np.max(np.abs(want)))


# ---- fully masked rows: the where= convention ----------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fully_masked_rows_are_zero_without_nan_or_warning(dtype):
    rng = np.random.default_rng(6)
    N_q, N_k = 12, 10
    Q, K, V, dO = make(rng, N_q, N_k, 4, 3, dtype)
    mask = masked(rng, N_q, N_k, empty_rows=(0, 5, 11))
    empty = ~mask.any(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any RuntimeWarning (0/0, inf - inf) fails
        naive = sg.attention(Q, K, V, mask=mask)
        g_naive = sg.attention_vjp(Q, K, V, naive.P, dO)
        tiled = sg.tiled_attention(Q, K, V, mask=mask, block_q=5, block_k=3)
        g_tiled = sg.tiled_attention_vjp(Q, K, V, *tiled, dO, mask=mask, block_q=5, block_k=3)
    assert np.all(naive.P[empty] == 0) and np.all(naive.out[empty] == 0)
    assert np.all(tiled.out[empty] == 0) and np.all(np.isneginf(tiled.lse[empty]))
    assert np.all(np.isfinite(tiled.lse[~empty]))
    for g in (*g_naive, *g_tiled):
        assert np.all(np.isfinite(g))
    assert np.all(g_naive.dQ[empty] == 0) and np.all(g_tiled.dQ[empty] == 0)
    # the empty rows add nothing to dK and dV: the same as dropping those queries
    kept = sg.attention(Q[~empty], K, V, mask=mask[~empty])
    g_kept = sg.attention_vjp(Q[~empty], K, V, kept.P, dO[~empty])
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for a, b in ((g_naive.dK, g_kept.dK), (g_naive.dV, g_kept.dV), (g_tiled.dK, g_kept.dK)):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def test_every_row_masked_and_no_keys():
    rng = np.random.default_rng(7)
    Q, K, V, dO = make(rng, 6, 5, 3, 2)
    mask = np.zeros((6, 5), bool)
    tiled = sg.tiled_attention(Q, K, V, mask=mask, block_q=4, block_k=2)
    grads = sg.tiled_attention_vjp(Q, K, V, *tiled, dO, mask=mask, block_q=4, block_k=2)
    assert np.all(tiled.out == 0) and np.all(np.isneginf(tiled.lse))
    assert all(np.all(g == 0) for g in grads)
    # N_k = 0: no key at all, the same convention
    K0, V0 = np.zeros((0, 3)), np.zeros((0, 2))
    empty = sg.tiled_attention(Q, K0, V0)
    assert empty.out.shape == (6, 2) and np.all(empty.out == 0)
    assert np.all(np.isneginf(empty.lse))
    assert np.all(sg.attention(Q, K0, V0).out == 0)


def test_nan_propagates():
    rng = np.random.default_rng(8)
    Q, K, V, dO = make(rng, 6, 5, 3, 2)
    Q[2, 1] = np.nan
    with np.errstate(invalid="ignore"):
        tiled = sg.tiled_attention(Q, K, V, block_q=4, block_k=2)
    assert np.all(np.isnan(tiled.out[2])) and np.all(np.isfinite(np.delete(tiled.out, 2, 0)))


# ---- the D identity ------------------------------------------------------------------------------

small = st.floats(-3, 3, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(st.data(), st.integers(1, 7), st.integers(1, 7), st.integers(1, 4), st.integers(1, 4))
def test_delta_needs_only_O_and_dO(data, N_q, N_k, d, d_v):
    """<P_i, dP_i> = <O_i, dO_i>: dP = dO V^T and O = P V, so both are sum_jc P_ij dO_ic V_jc."""
    Q = data.draw(arrays(np.float64, (N_q, d), elements=small))
    K = data.draw(arrays(np.float64, (N_k, d), elements=small))
    V = data.draw(arrays(np.float64, (N_k, d_v), elements=small))
    dO = data.draw(arrays(np.float64, (N_q, d_v), elements=small))
    mask = data.draw(arrays(np.bool_, (N_q, N_k)))
    out, P = sg.attention(Q, K, V, mask=mask)
    via_P = np.sum(P * (dO @ V.T), axis=1)  # <P_i, dP_i>, the softmax VJP's dot product
    D = sg.attention_delta(out, dO)
    # both are the same sum of N_k d_v products in a different order (plus underflow: a
    # subnormal's absolute error per product)
    scale = np.sum(np.abs(P) @ np.abs(V) * np.abs(dO), axis=1)
    tiny = np.finfo(float).smallest_subnormal
    tol = 4 * (N_k + d_v) * np.finfo(float).eps * scale + 4 * N_k * d_v * tiny
    assert np.all(np.abs(D - via_P) <= tol)


# ---- bad input ---------------------------------------------------------------------------------


def test_bad_inputs_raise_naming_the_argument():
    rng = np.random.default_rng(9)
    Q, K, V, dO = make(rng, 6, 5, 3, 2)
    with pytest.raises(ValueError, match="Q and K"):
        sg.attention(Q, K[:, :2], V)
    with pytest.raises(ValueError, match="K and V"):
        sg.tiled_attention(Q, K, V[:4])
    with pytest.raises(ValueError, match="Q must be 2-D"):
        sg.attention(Q[None], K, V)
    with pytest.raises(ValueError, match="mask"):
        sg.tiled_attention(Q, K, V, mask=np.ones((6, 4), bool))
    with pytest.raises(TypeError, match="mask"):
        sg.attention(Q, K, V, mask=np.ones((6, 5)))
    for bad in (0, -1, 2.5, True, None):
        with pytest.raises(ValueError, match="block_q"):
            sg.tiled_attention(Q, K, V, block_q=bad)
        with pytest.raises(ValueError, match="block_k"):
            sg.tiled_attention_vjp(Q, K, V, np.zeros((6, 2)), np.zeros(6), dO, block_k=bad)
    with pytest.raises(ValueError, match="dO.shape"):
        sg.attention_vjp(Q, K, V, np.zeros((6, 5)), dO[:, :1])
    with pytest.raises(ValueError, match="P.shape"):
        sg.attention_vjp(Q, K, V, np.zeros((5, 6)), dO)
    with pytest.raises(ValueError, match="lse.shape"):
        sg.tiled_attention_vjp(Q, K, V, np.zeros((6, 2)), np.zeros(5), dO)
    with pytest.raises(ValueError, match="out.shape"):
        sg.tiled_attention_vjp(Q, K, V, np.zeros((6, 3)), np.zeros(6), dO)
    with pytest.raises(TypeError, match="float32 or float64"):
        sg.attention(Q.astype(np.float16), K, V)
    with pytest.raises(ValueError, match="scale"):
        sg.attention(Q, K, V, scale=np.inf)
    with pytest.raises(TypeError, match="causal"):
        sg.attention(Q, K, V, causal="yes")
    with pytest.raises(ValueError, match="out and dO"):
        sg.attention_delta(np.zeros((6, 2)), np.zeros((6, 3)))


def test_scale_is_used():
    rng = np.random.default_rng(10)
    Q, K, V, dO = make(rng, 6, 5, 3, 2)
    a = sg.attention(Q, K, V, scale=0.7)
    b = sg.attention(0.7 * np.sqrt(3) * Q, K, V)
    np.testing.assert_allclose(a.out, b.out, rtol=1e-13)
    t = sg.tiled_attention(Q, K, V, scale=0.7, block_q=2, block_k=2)
    np.testing.assert_allclose(t.out, a.out, rtol=1e-13)
    g = sg.attention_vjp(Q, K, V, a.P, dO, scale=0.7)
    gt = sg.tiled_attention_vjp(Q, K, V, *t, dO, scale=0.7, block_q=2, block_k=2)
    for x, y in zip(g, gt, strict=True):
        np.testing.assert_allclose(y, x, rtol=1e-12, atol=1e-14)
