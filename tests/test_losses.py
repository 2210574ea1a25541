"""Losses: values from the definition, gradients from finite differences and mpmath, identities.

PyTorch as the oracle is in tests/test_losses_torch.py.
"""

import itertools

import mpmath
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from softmax_grad import (
    cross_entropy,
    distillation_loss,
    focal_loss,
    kl_divergence,
    mse,
    numerical_gradient,
    softmax,
    softmax_cross_entropy,
    softmax_vjp,
    z_loss,
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


# --- every composition softmax_vjp(y, dloss_dy) against finite differences (float64) ---------

_RNG = np.random.default_rng(13)
_X = _RNG.normal(size=(4, 5)) * 1.5
_LABELS = np.array([0, 2, 4, 2])
_SOFT = softmax(_RNG.normal(size=(4, 5)))
_W = _RNG.uniform(0.3, 2.0, size=5)
_G = _RNG.normal(size=4)  # per-row upstream gradient for reduction="none"

# name -> loss of probabilities y: (loss, dloss_dy)
_PROB_LOSSES = {
    "cross_entropy": lambda y, r: cross_entropy(y, _LABELS, reduction=r),
    "cross_entropy, weight, smoothing, ignore_index": lambda y, r: cross_entropy(
        y, _LABELS, weight=_W, label_smoothing=0.3, ignore_index=2, reduction=r
    ),
    "cross_entropy, soft target, weight, smoothing": lambda y, r: cross_entropy(
        y, _SOFT, weight=_W, label_smoothing=0.1, reduction=r
    ),
    "focal, gamma=2, alpha": lambda y, r: focal_loss(y, _LABELS, 2.0, alpha=_W, reduction=r),
    "focal, gamma=0.5": lambda y, r: focal_loss(y, _LABELS, 0.5, reduction=r),
    "kl_divergence": lambda y, r: kl_divergence(_SOFT, y, reduction=r),
}


def _scalar(loss, reduction):
    """The scalar whose gradient is checked: the loss, or <g, loss_rows> for "none"."""
    return np.sum(_G * loss) if reduction == "none" else loss


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", list(_PROB_LOSSES))
def test_composition_matches_finite_differences(name, reduction):
    fn = _PROB_LOSSES[name]
    y = softmax(_X)
    _, dy = fn(y, reduction)
    up = _G[:, None] if reduction == "none" else 1
    dx = softmax_vjp(y, up * dy)
    num = numerical_gradient(lambda x: _scalar(fn(softmax(x), reduction)[0], reduction), _X)
    np.testing.assert_allclose(dx, num, rtol=1e-7, atol=1e-9)


_LOGIT_LOSSES = {
    "softmax_cross_entropy, weight, smoothing, ignore_index": lambda x, r: softmax_cross_entropy(
        x, _LABELS, weight=_W, label_smoothing=0.3, ignore_index=2, reduction=r
    ),
    "softmax_cross_entropy, soft target": lambda x, r: softmax_cross_entropy(
        x, _SOFT, weight=_W, label_smoothing=0.1, reduction=r
    ),
    "distillation, T=2": lambda x, r: distillation_loss(x, 2 * _SOFT, 2.0, reduction=r),
    "z_loss": lambda x, r: z_loss(x + 1, reduction=r),
}


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", list(_LOGIT_LOSSES))
def test_fused_twins_match_finite_differences(name, reduction):
    fn = _LOGIT_LOSSES[name]
    _, dx = fn(_X, reduction)
    up = _G[:, None] if reduction == "none" else 1
    num = numerical_gradient(lambda x: _scalar(fn(x, reduction)[0], reduction), _X)
    np.testing.assert_allclose(up * dx, num, rtol=1e-7, atol=1e-9)


def test_values_from_the_definition():
    y = softmax(_X)
    logy = np.log(y)
    rows = np.arange(4)
    # weighted, smoothed, one row ignored, PyTorch's weighted mean: sum(w_k l_r) / sum(w_k)
    keep = _LABELS != 2
    lr = -(0.7 * _W[_LABELS] * logy[rows, _LABELS] + 0.3 / 5 * (logy * _W).sum(-1))
    expect = lr[keep].sum() / _W[_LABELS][keep].sum()
    got = cross_entropy(y, _LABELS, weight=_W, label_smoothing=0.3, ignore_index=2)[0]
    assert got == pytest.approx(expect, rel=1e-13)
    q = 1 - y[rows, _LABELS]
    assert focal_loss(y, _LABELS, 2.0)[0] == pytest.approx(
        np.mean(-(q**2) * logy[rows, _LABELS]), rel=1e-13
    )
    assert kl_divergence(_SOFT, y, reduction="sum")[0] == pytest.approx(
        np.sum(_SOFT * np.log(_SOFT / y)), rel=1e-13
    )
    lse = np.log(np.exp(_X).sum(-1))
    np.testing.assert_allclose(z_loss(_X, reduction="none")[0], lse**2, rtol=1e-13)


def test_z_loss_gradient_is_not_a_softmax_vjp():
    # Rows of any softmax VJP sum to 0; the z-loss gradient's rows sum to 2 lse / B.
    lse = np.log(np.exp(_X).sum(-1))
    _, dx = z_loss(_X)
    np.testing.assert_allclose(dx.sum(-1), 2 * lse / 4, rtol=1e-13)


def test_distillation_composes_through_kl_and_temperature():
    T = 3.0
    v = _RNG.normal(size=_X.shape)
    y, t = softmax(_X / T), softmax(v / T)
    _, dy = kl_divergence(t, y)
    _, dx = distillation_loss(_X, v, T)
    np.testing.assert_allclose(dx, T**2 * softmax_vjp(y, dy) / T, rtol=1e-12, atol=1e-16)


# --- properties -------------------------------------------------------------------------------

_OPTIONS = [
    dict(weight=w, ignore_index=i, label_smoothing=e)
    for w, i, e in itertools.product([None, "w"], [None, 1], [0.0, 0.25])
]


@pytest.mark.parametrize("opts", _OPTIONS, ids=str)
@given(logits(min_dims=2, max_dims=2, max_side=6))
def test_fused_equals_composition_with_options(opts, x):
    labels = _labels_for(x)
    n = x.shape[-1]
    kw = dict(opts, weight=np.linspace(0.5, 1.5, n) if opts["weight"] else None)
    if kw["ignore_index"] is not None and n < 2:
        kw["ignore_index"] = None
    for reduction in ("mean", "sum", "none"):
        p = softmax(x)
        lc, dp = cross_entropy(p, labels, reduction=reduction, **kw)
        lf, dx = softmax_cross_entropy(x, labels, reduction=reduction, **kw)
        if np.all(np.isfinite(dp)):  # p underflowing to 0 makes the composition inf/NaN
            np.testing.assert_allclose(dx, softmax_vjp(p, dp), rtol=1e-9, atol=1e-14)
            np.testing.assert_allclose(lf, lc, rtol=1e-9, atol=1e-12)


@given(logits(min_dims=2, max_dims=2, max_side=6), st.sampled_from([None, 0]))
def test_reductions_are_consistent(x, ignore):
    labels = _labels_for(x)
    w = np.linspace(0.5, 1.5, x.shape[-1])
    kw = dict(weight=w, ignore_index=ignore, label_smoothing=0.1)
    none, d_none = softmax_cross_entropy(x, labels, reduction="none", **kw)
    total, d_sum = softmax_cross_entropy(x, labels, reduction="sum", **kw)
    mean, d_mean = softmax_cross_entropy(x, labels, reduction="mean", **kw)
    keep = labels != ignore
    denom = w[labels][keep].sum()
    assert total == pytest.approx(none.sum(), rel=1e-12, abs=1e-300)
    np.testing.assert_allclose(d_sum, d_none, rtol=1e-12, atol=1e-300)
    if denom > 0:
        assert mean == pytest.approx(total / denom, rel=1e-12, abs=1e-300)
        np.testing.assert_allclose(d_mean, d_sum / denom, rtol=1e-12, atol=1e-300)
    assert np.all(d_none[~keep] == 0) and np.all(none[~keep] == 0)


@given(logits(min_dims=2, max_dims=2, max_side=6), st.sampled_from(["mean", "sum", "none"]))
def test_every_prob_loss_gives_rows_summing_to_zero(x, reduction):
    # softmax_vjp of any dloss_dy: each row of dx sums to 0 (the logits' shift invariance).
    y = softmax(x)
    labels = _labels_for(x)
    t = softmax(x[::-1] if x.shape[0] > 1 else -x)
    for _, dy in (
        cross_entropy(y, labels, label_smoothing=0.1, reduction=reduction),
        focal_loss(y, labels, 1.5, reduction=reduction),
        kl_divergence(t, y, reduction=reduction),
    ):
        if np.all(np.isfinite(dy)):
            dx = softmax_vjp(y, dy)
            scale = np.max(np.abs(y * dy), axis=-1) + 1e-300
            assert np.all(np.abs(dx.sum(-1)) <= 64 * np.finfo(float).eps * scale * x.shape[-1])


def test_neutral_options_change_nothing():
    base = softmax_cross_entropy(_X, _LABELS)
    for kw in (dict(weight=np.ones(5)), dict(label_smoothing=0.0), dict(ignore_index=-100)):
        loss, dx = softmax_cross_entropy(_X, _LABELS, **kw)
        assert loss == pytest.approx(base[0], rel=1e-15)
        np.testing.assert_allclose(dx, base[1], rtol=1e-15)
    onehot = np.eye(5)[_LABELS]
    loss, dx = softmax_cross_entropy(_X, onehot)
    assert loss == pytest.approx(base[0], rel=1e-14)
    np.testing.assert_allclose(dx, base[1], rtol=1e-12, atol=1e-17)
    # gamma = 0 makes the focal loss cross-entropy
    y = softmax(_X)
    np.testing.assert_allclose(focal_loss(y, _LABELS, 0.0)[1], cross_entropy(y, _LABELS)[1])


def test_out_receives_the_gradient():
    for fn, args in (
        (softmax_cross_entropy, (_X, _LABELS)),
        (cross_entropy, (softmax(_X), _LABELS)),
        (focal_loss, (softmax(_X), _LABELS)),
        (kl_divergence, (_SOFT, softmax(_X))),
        (distillation_loss, (_X, _SOFT)),
        (z_loss, (_X,)),
    ):
        expect = fn(*args)[1]
        out = np.full_like(_X, np.nan)
        res = fn(*args, out=out)[1]
        assert res is out
        np.testing.assert_array_equal(out, expect)


# --- accuracy at the true class (mpmath reference from the logits) ----------------------------


def _reference_dx(x, labels, eps, weight):
    """dloss/dlogits of weighted, smoothed cross-entropy (reduction "sum") in 50-digit mpmath."""
    mpmath.mp.dps = 50
    n = x.shape[-1]
    w = [mpmath.mpf(1)] * n if weight is None else [mpmath.mpf(float(v)) for v in weight]
    big_w = mpmath.fsum(w)
    out = np.empty(x.shape)
    for r, (row, k) in enumerate(zip(x, labels, strict=True)):
        e = [mpmath.exp(mpmath.mpf(float(v))) for v in row]
        tot = mpmath.fsum(e)
        c = (1 - mpmath.mpf(eps)) * w[k]
        for j in range(n):
            p = e[j] / tot
            out[r, j] = float(c * (p - (j == k)) + mpmath.mpf(eps) / n * (big_w * p - w[j]))
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [2, 7, 33])
def test_true_class_gradient_is_accurate_where_y_k_rounds_to_one(dtype, n):
    """Every entry of dloss_dlogits to a small multiple of n u, at logit gaps from 0 to beyond
    where y_k rounds to 1 (there y_k - 1 computed directly is 0, a 100 % error).

    Error budget: x_j - m rounds (u |x_j - m|), exp (u), the sums over n terms (n u each) and
    two divisions; so (2n + 4 + max |x - m|) u bounds the relative error of y_j and of
    -sum_{j != k} y_j."""
    u = np.finfo(dtype).eps / 2
    rng = np.random.default_rng(n)
    top = -np.log(np.finfo(dtype).eps) + 2 * np.log(n) + 10  # y_k rounds to 1 well before
    gaps = np.linspace(0, top, 24)
    x = rng.uniform(-1, 1, size=(gaps.size, n)).astype(dtype)
    labels = rng.integers(0, n, size=gaps.size)
    x[np.arange(gaps.size), labels] += gaps.astype(dtype)
    _, dx = softmax_cross_entropy(x, labels, reduction="sum")
    ref = _reference_dx(x, labels, 0.0, None)
    rel = np.abs(dx.astype(np.float64) - ref) / np.abs(ref)
    spread = np.max(x, axis=-1, keepdims=True) - x
    allowed = (2 * n + 4 + np.max(spread)) * u
    assert np.max(rel) <= allowed, (np.max(rel) / u, allowed / u)
    naive = (softmax(x) - np.eye(n, dtype=dtype)[labels]).astype(np.float64)
    assert np.max(np.abs(naive - ref) / np.abs(ref)) >= 0.5  # the direct y_k - 1 fails there


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weighted", [False, True])
def test_smoothed_weighted_gradient_is_accurate_against_its_terms(dtype, weighted):
    """With smoothing the entry is c (y_j - delta_jk) + (lambda/n)(W y_j - w_j): a sum of terms
    of either sign, so its error is bounded relative to the terms' magnitudes (the cancellation
    between them is the problem's, not the algorithm's); y_k - 1 stays accurate inside."""
    n, u, eps = 7, np.finfo(dtype).eps / 2, 0.1
    rng = np.random.default_rng(3)
    gaps = np.linspace(0, -np.log(np.finfo(dtype).eps) + 12, 20)
    x = rng.uniform(-1, 1, size=(gaps.size, n)).astype(dtype)
    labels = rng.integers(0, n, size=gaps.size)
    x[np.arange(gaps.size), labels] += gaps.astype(dtype)
    w = rng.uniform(0.5, 2, size=n).astype(dtype) if weighted else None
    _, dx = softmax_cross_entropy(x, labels, weight=w, label_smoothing=eps, reduction="sum")
    ref = _reference_dx(x, labels, eps, w)
    y = softmax(x.astype(np.float64))
    wv = np.ones(n) if w is None else w.astype(np.float64)
    onehot = np.eye(n)[labels]
    terms = (1 - eps) * wv[labels][:, None] * np.abs(y - onehot) + eps / n * (wv.sum() * y + wv)
    spread = np.max(x, axis=-1, keepdims=True) - x
    allowed = (2 * n + 8 + np.max(spread)) * u
    assert np.max(np.abs(dx - ref) / terms) <= allowed


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("func", [cross_entropy, softmax_cross_entropy, focal_loss])
def test_labels_not_integers_or_wrong_shape(func):
    p = np.full((2, 3), 1 / 3)
    with pytest.raises(TypeError, match=r"labels must be integers .* got dtype float64"):
        func(p, np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\)"):
        func(p, np.zeros((2, 1), int))


def test_ignore_index_is_allowed_out_of_range_and_named_in_the_error():
    p = np.full((2, 3), 1 / 3)
    cross_entropy(p, np.array([0, -100]), ignore_index=-100)
    with pytest.raises(ValueError, match=r"\[0, 3\) for 3 classes or equal ignore_index=-100"):
        cross_entropy(p, np.array([5, -100]), ignore_index=-100)
    with pytest.raises(ValueError, match="ignore_index applies to integer labels"):
        cross_entropy(p, p, ignore_index=-100)
    with pytest.raises(TypeError, match="ignore_index must be an int"):
        cross_entropy(p, np.array([0, 1]), ignore_index=1.0)


@pytest.mark.parametrize("func", [cross_entropy, softmax_cross_entropy])
def test_bad_weight_smoothing_reduction(func):
    p, lab = np.full((2, 3), 1 / 3), np.array([0, 1])
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\), one entry per class"):
        func(p, lab, weight=np.ones(4))
    with pytest.raises(ValueError, match="weight must be non-negative, got -1.0 for class 1"):
        func(p, lab, weight=np.array([1.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match="weight must be non-negative, got nan"):
        func(p, lab, weight=np.array([1.0, 1.0, np.nan]))
    for bad in (-0.1, 1.5, np.nan):
        with pytest.raises(ValueError, match=r"label_smoothing must lie in \[0, 1\]"):
            func(p, lab, label_smoothing=bad)
    with pytest.raises(TypeError, match="label_smoothing must be a real number"):
        func(p, lab, label_smoothing="0.1")
    with pytest.raises(
        ValueError, match="reduction must be one of 'mean', 'sum', 'none', got 'avg'"
    ):
        func(p, lab, reduction="avg")


def test_bad_input_of_the_other_losses():
    p, lab = np.full((2, 3), 1 / 3), np.array([0, 1])
    with pytest.raises(ValueError, match="gamma must be a finite number >= 0, got -1.0"):
        focal_loss(p, lab, -1.0)
    with pytest.raises(ValueError, match="alpha must be non-negative"):
        focal_loss(p, lab, alpha=-0.5)
    with pytest.raises(ValueError, match=r"alpha must have shape \(3,\)"):
        focal_loss(p, lab, alpha=[1.0, 2.0])
    with pytest.raises(ValueError, match="target_probs and probs must have the same shape"):
        kl_divergence(p, p[:, :2])
    with pytest.raises(ValueError, match="temperature must be a finite number > 0, got 0.0"):
        distillation_loss(p, p, 0.0)
    with pytest.raises(ValueError, match="reduction must be one of"):
        z_loss(p, reduction="batchmean")
    with pytest.raises(ValueError, match=r"logits must have shape \(\.\.\., n\)"):
        z_loss(np.float64(1.0))
    with pytest.raises(ValueError, match=r"out must have shape \(2, 3\) and dtype float64"):
        softmax_cross_entropy(p, lab, out=np.empty((2, 3), np.float32))
    with pytest.raises(ValueError, match="out must not overlap an input"):
        z_loss(p, out=p)


@pytest.mark.parametrize("func", [cross_entropy, softmax_cross_entropy])
def test_out_must_not_overlap_a_probability_target(func):
    # softmax_cross_entropy computes exp into out before it reads the target: an out that is
    # the target would silently give a wrong gradient.
    t = np.full((2, 3), 1 / 3)
    with pytest.raises(ValueError, match="out must not overlap an input"):
        func(softmax(_X[:2, :3]), t, out=t)
