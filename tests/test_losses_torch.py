"""Every loss and option against PyTorch (CPU) as the oracle: values and logits gradients.

The library's gradient for the logits is the loss's ``dloss_dy`` through the unchanged
``softmax_vjp`` (and the fused twin on logits, where there is one); PyTorch's is autograd of
``F.cross_entropy``, ``F.kl_div`` or, where PyTorch has no built-in (focal loss, z-loss), of the
written-out definition. With ``reduction="none"`` a per-row upstream gradient g is applied, as
``g[..., None] * dloss_dy`` here and as ``loss.backward(g)`` in PyTorch.
"""

import itertools

import ml_dtypes
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import softmax_grad as sg

B, N = 7, 5
RTOL = {np.float64: 1e-12, np.float32: 2e-5}


def _data(dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = (2 * rng.normal(size=(B, N))).astype(dtype)
    labels = rng.integers(0, N, size=B)
    labels[3] = labels[5] = 2  # class 2 appears, so ignore_index=2 removes rows
    soft = sg.softmax(rng.normal(size=(B, N))).astype(dtype)
    weight = rng.uniform(0.2, 2.0, size=N).astype(dtype)
    g = rng.normal(size=B).astype(dtype)
    return x, labels, soft, weight, g


def _torch_grad(loss_fn, x, reduction, g):
    xt = torch.tensor(x, requires_grad=True)
    loss = loss_fn(xt)
    loss.backward(torch.tensor(g) if reduction == "none" else None)
    return loss.detach().numpy(), xt.grad.numpy()


def _upstream(reduction, g):
    return g[:, None] if reduction == "none" else 1


def _close(actual, expected, dtype, what):
    expected = np.asarray(expected, dtype=np.float64)
    scale = np.max(np.abs(expected)) if expected.size else 0
    err = np.max(np.abs(np.asarray(actual, np.float64) - expected))
    assert err <= RTOL[dtype] * max(scale, 1e-300), f"{what}: max |difference| {err:.3g}"


CE_CASES = [
    (red, eps, weighted, ignore, target)
    for red, eps, weighted, ignore, target in itertools.product(
        ["mean", "sum", "none"], [0.0, 0.2, 1.0], [False, True], [None, -100, 2], ["hard", "soft"]
    )
    if not (target == "soft" and ignore is not None)
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("reduction", "eps", "weighted", "ignore", "target"), CE_CASES)
def test_cross_entropy_matches_torch(dtype, reduction, eps, weighted, ignore, target):
    x, labels, soft, weight, g = _data(dtype)
    if ignore == -100:
        labels[[1, 4]] = -100
    tgt = soft if target == "soft" else labels
    w = weight if weighted else None
    opts = dict(weight=w, ignore_index=ignore, label_smoothing=eps, reduction=reduction)
    t_opts = dict(
        weight=None if w is None else torch.tensor(w),
        ignore_index=-100 if ignore is None else ignore,
        label_smoothing=eps,
        reduction=reduction,
    )
    loss_t, dx_t = _torch_grad(
        lambda z: F.cross_entropy(z, torch.tensor(tgt), **t_opts), x, reduction, g
    )
    up = _upstream(reduction, g)
    y = sg.softmax(x)
    loss_c, dy = sg.cross_entropy(y, tgt, **opts)
    loss_f, dx_f = sg.softmax_cross_entropy(x, tgt, **opts)
    _close(loss_c, loss_t, dtype, "composed loss")
    _close(loss_f, loss_t, dtype, "fused loss")
    _close(sg.softmax_vjp(y, up * dy), dx_t, dtype, "softmax_vjp(y, g * dloss_dy)")
    _close(up * dx_f, dx_t, dtype, "fused dloss_dlogits")


def test_cross_entropy_all_rows_ignored_is_nan_like_torch():
    x, labels, *_ = _data(np.float64)
    labels[:] = -100
    loss_t = F.cross_entropy(torch.tensor(x), torch.tensor(labels)).item()
    loss, dx = sg.softmax_cross_entropy(x, labels, ignore_index=-100)
    assert np.isnan(loss) and np.isnan(loss_t)
    assert np.all(dx == 0)


def _focal_torch(z, labels, gamma, alpha, reduction):
    # Lin et al. (2017), multi-class: -alpha_k (1 - p_k)^gamma log p_k, written out.
    logp = F.log_softmax(z, dim=-1).gather(-1, torch.tensor(labels)[:, None])[:, 0]
    a = 1.0 if alpha is None else torch.tensor(alpha)[torch.tensor(labels)]
    rows = -a * (1 - logp.exp()) ** gamma * logp
    return {"mean": rows.mean(), "sum": rows.sum(), "none": rows}[reduction]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("with_alpha", [False, True])
def test_focal_loss_matches_autograd_of_definition(dtype, reduction, gamma, with_alpha):
    x, labels, _, weight, g = _data(dtype)
    alpha = weight if with_alpha else None
    loss_t, dx_t = _torch_grad(
        lambda z: _focal_torch(z, labels, gamma, alpha, reduction), x, reduction, g
    )
    y = sg.softmax(x)
    loss, dy = sg.focal_loss(y, labels, gamma, alpha=alpha, reduction=reduction)
    _close(loss, loss_t, dtype, "focal loss")
    _close(sg.softmax_vjp(y, _upstream(reduction, g) * dy), dx_t, dtype, "focal dx")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_kl_divergence_matches_torch_kl_div(dtype, reduction):
    x, _, soft, _, g = _data(dtype)
    soft[0, 1] = 0  # a zero target entry contributes 0 (0 log 0)
    t_red = {"mean": "batchmean", "sum": "sum", "none": "none"}[reduction]

    def torch_loss(z):
        out = F.kl_div(F.log_softmax(z, dim=-1), torch.tensor(soft), reduction=t_red)
        return out.sum(-1) if reduction == "none" else out

    loss_t, dx_t = _torch_grad(torch_loss, x, reduction, g)
    y = sg.softmax(x)
    loss, dy = sg.kl_divergence(soft, y, reduction=reduction)
    _close(loss, loss_t, dtype, "KL loss")
    _close(sg.softmax_vjp(y, _upstream(reduction, g) * dy), dx_t, dtype, "KL dx")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("T", [1.0, 2.5])
def test_distillation_matches_torch(dtype, reduction, T):
    x, _, _, _, g = _data(dtype)
    v = (3 * np.random.default_rng(5).normal(size=x.shape)).astype(dtype)
    t_red = {"mean": "batchmean", "sum": "sum", "none": "none"}[reduction]

    def torch_loss(z):
        out = F.kl_div(
            F.log_softmax(z / T, dim=-1), F.softmax(torch.tensor(v) / T, dim=-1), reduction=t_red
        )
        return T**2 * (out.sum(-1) if reduction == "none" else out)

    loss_t, dx_t = _torch_grad(torch_loss, x, reduction, g)
    up = _upstream(reduction, g)
    loss, dx = sg.distillation_loss(x, v, T, reduction=reduction)
    _close(loss, loss_t, dtype, "distillation loss")
    _close(up * dx, dx_t, dtype, "distillation dx (fused)")
    # The composition: KL's dloss_dy through softmax_vjp, then the chain rule through x/T.
    y, t = sg.softmax(x / T), sg.softmax(v / T)
    _, dy = sg.kl_divergence(t, y, reduction=reduction)
    _close(T**2 * sg.softmax_vjp(y, up * dy) / T, dx_t, dtype, "distillation dx (composed)")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_z_loss_matches_autograd_of_definition(dtype, reduction):
    x, _, _, _, g = _data(dtype)
    x = x + 4  # centred logits would make the z-loss small; shift them

    def torch_loss(z):
        rows = torch.logsumexp(z, dim=-1) ** 2
        return {"mean": rows.mean(), "sum": rows.sum(), "none": rows}[reduction]

    loss_t, dx_t = _torch_grad(torch_loss, x, reduction, g)
    loss, dx = sg.z_loss(x, reduction=reduction)
    _close(loss, loss_t, dtype, "z-loss")
    _close(_upstream(reduction, g) * dx, dx_t, dtype, "z-loss dx")


def test_cross_entropy_plus_z_loss_matches_torch():
    x, labels, *_ = _data(np.float64)
    coef = 1e-2
    loss_t, dx_t = _torch_grad(
        lambda z: (
            F.cross_entropy(z, torch.tensor(labels))
            + coef * (torch.logsumexp(z, dim=-1) ** 2).mean()
        ),
        x,
        "mean",
        None,
    )
    y = sg.softmax(x)
    ce, dy = sg.cross_entropy(y, labels)
    zl, dx_z = sg.z_loss(x)
    _close(ce + coef * zl, loss_t, np.float64, "CE + z-loss")
    _close(sg.softmax_vjp(y, dy) + coef * dx_z, dx_t, np.float64, "CE + z-loss dx")


# --- half precision: F.cross_entropy on bfloat16 and float16 logits ----------------------------

HALF = [(ml_dtypes.bfloat16, torch.bfloat16), (np.float16, torch.float16)]
HALF_CASES = [
    (shape, reduction, weighted, ignore)
    for shape, reduction, (weighted, ignore) in itertools.product(
        [(7, 5), (64, 1000)], ["mean", "sum", "none"], [(False, None), (True, 2)]
    )
]


def _half_case(dtype, tdtype, shape, reduction, weighted, ignore):
    """Ours and PyTorch's half-precision loss and logits gradient (times the upstream g for
    "none"), with the float64 reference of the same inputs and its log-probabilities."""
    b, n = shape
    rng = np.random.default_rng(n)
    x = (2 * rng.normal(size=(b, n))).astype(dtype)
    labels = rng.integers(0, n, size=b)
    labels[3] = labels[5] = 2
    w = rng.uniform(0.2, 2.0, size=n).astype(dtype) if weighted else None
    g = rng.normal(size=b).astype(dtype)
    x64, w64, g64 = (
        x.astype(np.float64),
        None if w is None else w.astype(np.float64),
        g.astype(float),
    )
    opts = dict(ignore_index=ignore, reduction=reduction)
    up = g64[:, None] if reduction == "none" else 1
    loss, dx = sg.softmax_cross_entropy(x, labels, weight=w, **opts)
    ref_loss, ref_dx = sg.softmax_cross_entropy(x64, labels, weight=w64, **opts)
    xt = torch.tensor(x64, dtype=tdtype, requires_grad=True)
    loss_t = F.cross_entropy(
        xt,
        torch.tensor(labels),
        weight=None if w is None else torch.tensor(w64, dtype=tdtype),
        ignore_index=-100 if ignore is None else ignore,
        reduction=reduction,
    )
    loss_t.backward(torch.tensor(g64, dtype=tdtype) if reduction == "none" else None)
    assert loss_t.dtype == xt.grad.dtype == tdtype  # PyTorch returns the input's dtype too
    assert np.asarray(loss).dtype == dx.dtype == dtype
    return dict(
        loss=np.asarray(loss, np.float64),
        dx=up * dx.astype(np.float64),
        loss_t=loss_t.detach().double().numpy(),
        dx_t=xt.grad.double().numpy(),
        ref_loss=ref_loss,
        ref_dx=up * ref_dx,
        logp=sg.log_softmax(x64),
        labels=labels,
        up=np.abs(up),
        k=2 * n + b + 4 * float(np.ptp(x64)) + 32,  # float32 roundings, as in test_losses_half
    )


@pytest.mark.parametrize(("dtype", "tdtype"), HALF, ids=["bfloat16", "float16"])
@pytest.mark.parametrize(("shape", "reduction", "weighted", "ignore"), HALF_CASES, ids=str)
def test_half_cross_entropy_matches_torch(dtype, tdtype, shape, reduction, weighted, ignore):
    """PyTorch computes log_softmax in float32 but stores the log-probabilities in the half
    dtype; nll_loss and its backward then round, in the half dtype, the mean's total weight,
    grad / total weight, its product with w_k, and dx. Its gradient for the logits,
    g (delta_jk - exp(logp_j)) with g = s_r w_k, therefore carries up to 4 roundings
    u_h |dx_j| and the exp of a log-probability off by u_h |logp_j|, about |g| p_j u_h |logp_j|;
    ours is one rounding, so 5 u_h |dx_j| in all. Both carry the float32 arithmetic's
    e32 = k u32 |dx|. The loss: the rounded log-probabilities (terms of one sign, so u_h |L|),
    the total weight and the quotient for PyTorch, one rounding for ours, 4 u_h |L| in all.
    Label smoothing is left out: PyTorch computes its term with half-precision tensor
    arithmetic (tests/test_losses_half.py checks ours against float64)."""
    r = _half_case(dtype, tdtype, shape, reduction, weighted, ignore)
    u = float(ml_dtypes.finfo(dtype).eps) / 2
    eta = float(ml_dtypes.finfo(dtype).smallest_subnormal)
    e32 = r["k"] * 2.0**-24
    rows = np.arange(len(r["labels"]))
    p = np.exp(r["logp"])
    ref_k = r["ref_dx"][rows, r["labels"]]
    g = np.abs(ref_k / (p[rows, r["labels"]] - 1))[:, None]  # |g| = |dx_k| / (1 - p_k)
    allowed = u * (5 * np.abs(r["ref_dx"]) + 1.01 * g * p * np.abs(r["logp"]))
    allowed += 2 * e32 * np.abs(r["ref_dx"]) + (1 + r["up"]) * eta  # ours scaled by |g_r|
    diff = np.abs(r["dx"] - r["dx_t"])
    assert np.all(diff <= allowed), f"dx: max |ours - torch| / allowed {np.max(diff / allowed):.3g}"
    allowed_loss = (4 * u + 2 * e32) * np.abs(r["ref_loss"]) + 2 * eta
    diff_loss = np.abs(r["loss"] - r["loss_t"])
    assert np.all(diff_loss <= allowed_loss), np.max(diff_loss / allowed_loss)


@pytest.mark.parametrize(("dtype", "tdtype"), HALF, ids=["bfloat16", "float16"])
def test_torch_half_gradient_needs_the_log_probability_term(dtype, tdtype):
    # The log-probability term above is not padding. Unweighted, with a mean over 64 rows (1/64
    # is exact), PyTorch's only rounding besides its log-probabilities is that of dx: without
    # them it would be within one rounding of float64, as ours is. At 1000 classes it is off by
    # more than two.
    r = _half_case(dtype, tdtype, (64, 1000), "mean", False, None)
    u = float(ml_dtypes.finfo(dtype).eps) / 2
    eta = float(ml_dtypes.finfo(dtype).smallest_subnormal)
    e32 = r["k"] * 2.0**-24
    rounding = (u + e32) * np.abs(r["ref_dx"]) + eta / 2
    assert np.max(np.abs(r["dx"] - r["ref_dx"]) / rounding) <= 1
    assert np.max(np.abs(r["dx_t"] - r["ref_dx"]) / (2 * rounding)) > 1
