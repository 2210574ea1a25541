"""Every loss in float16 and bfloat16 (ml_dtypes): computed in float32, loss and gradient rounded
once to the input's dtype, against float64 of the same (upcast, hence exact) inputs.

Tolerance of one entry: u_h |ref| + (1 + u_h) e32 + eta_h / 2, where u_h and eta_h are the half
dtype's unit roundoff and smallest subnormal (one rounding of the float32 result) and e32 bounds
the float32 computation's own error, k u32 M: u32 = 2^-24, M the sum of the magnitudes of the
terms the entry is made of (the entry itself where no terms cancel), and k counts the roundings
a term passes through: shifts x - m (u32 |x - m| each, so 4 times the row's spread covers the
exp of a rounded shift), exp and log (NumPy's float32 loops: a few u32), the row sums (2n for
n classes; NumPy sums a contiguous row pairwise, so at most 64 additions per term for the
70000 classes below), the sum over B rows, and 32 for the remaining products and divisions.
"""

import ml_dtypes
import numpy as np
import pytest

import softmax_grad as sg

HALVES = [np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)]
U32 = 2.0**-24
B, N = 6, 9


def _u(dtype):
    return float(ml_dtypes.finfo(dtype).eps) / 2


def _eta(dtype):
    return float(ml_dtypes.finfo(dtype).smallest_subnormal)


def _rounded_once(computed, ref, magnitude, dtype, k, what):
    """Assert ``computed`` (in ``dtype``) is float64 ``ref`` rounded once, up to e32 = k u32
    ``magnitude``; return the worst error in units of one rounding, u_h |ref| + eta_h / 2."""
    computed = np.asarray(computed)
    assert computed.dtype == dtype, f"{what}: dtype {computed.dtype}, expected {dtype}"
    err = np.abs(computed.astype(np.float64) - ref)
    one = _u(dtype) * np.abs(ref) + _eta(dtype) / 2
    allowed = one + (1 + _u(dtype)) * k * U32 * np.asarray(magnitude) + _eta(dtype) / 2
    worst = float(np.max(err / allowed))
    assert worst <= 1, f"{what}: max err/allowed {worst:.3g}"
    return float(np.max(err / one))


def _data(dtype, seed=0):
    """Half-precision inputs: logits x, v, z = x + 3 (B, N), labels, probabilities
    y = softmax(x) and a target t, class weights w; and the same values in float64."""
    rng = np.random.default_rng(seed)
    half = dict(
        x=(2 * rng.normal(size=(B, N))).astype(dtype),
        v=(3 * rng.normal(size=(B, N))).astype(dtype),
        t=sg.softmax(rng.normal(size=(B, N))).astype(dtype),
        w=rng.uniform(0.2, 2.0, size=N).astype(dtype),
    )
    half["y"] = sg.softmax(half["x"])
    half["z"] = (half["x"].astype(np.float64) + 3).astype(dtype)  # logits off centre
    wide = {key: a.astype(np.float64) for key, a in half.items()}
    labels = rng.integers(0, N, size=B)
    labels[1] = labels[4]  # ignore_index=labels[1] removes two rows
    return half, wide, labels


def _scale(reduction, rows):
    """s_r, the reduction's factor of each row (no class weights in the mean)."""
    return 1 / rows if reduction == "mean" else 1.0


def _ce_smoothed(labels, reduction, a):
    return dict(
        weight=a["w"], ignore_index=int(labels[1]), label_smoothing=0.1, reduction=reduction
    )


# name -> (loss of the inputs a, float64 magnitudes (loss M, gradient M) from the inputs w)
CASES = {
    "mse": (
        lambda a, lab, r: sg.mse(a["y"], a["t"]),
        lambda a, lab, r, ref: (np.abs(ref[0]), np.abs(ref[1])),
    ),
    "cross_entropy, weight, smoothing, ignore_index": (
        lambda a, lab, r: sg.cross_entropy(a["y"], lab, **_ce_smoothed(lab, r, a)),
        lambda a, lab, r, ref: (np.abs(ref[0]), np.abs(ref[1])),  # terms of one sign
    ),
    "cross_entropy, soft target": (
        lambda a, lab, r: sg.cross_entropy(a["y"], a["t"], label_smoothing=0.1, reduction=r),
        lambda a, lab, r, ref: (np.abs(ref[0]), np.abs(ref[1])),
    ),
    "softmax_cross_entropy, weight, smoothing, ignore_index": (
        lambda a, lab, r: sg.softmax_cross_entropy(a["x"], lab, **_ce_smoothed(lab, r, a)),
        # s_r [c (y_j + delta_jk) + (lambda/n)(W y_j + w_j)]: the terms of c (y_j - delta_jk)
        # + (lambda/n)(W y_j - w_j), which cancel; s_r <= 1 / (smallest weight) for the mean
        lambda a, lab, r, ref: (
            np.abs(ref[0]),
            (1 if r != "mean" else 1 / a["w"].min())
            * (
                0.9 * a["w"][lab][:, None] * (sg.softmax(a["x"]) + np.eye(N)[lab])
                + 0.1 / N * (a["w"].sum() * sg.softmax(a["x"]) + a["w"])
            ),
        ),
    ),
    "softmax_cross_entropy, soft target": (
        lambda a, lab, r: sg.softmax_cross_entropy(a["x"], a["t"], reduction=r),
        lambda a, lab, r, ref: (
            np.abs(ref[0]),
            _scale(r, B) * (sg.softmax(a["x"]) + a["t"]),  # s_r (y_j sum t + t_j)
        ),
    ),
    "focal_loss, alpha": (
        lambda a, lab, r: sg.focal_loss(a["y"], lab, 2.0, alpha=a["w"], reduction=r),
        lambda a, lab, r, ref: (np.abs(ref[0]), np.abs(ref[1])),  # terms of one sign
    ),
    "kl_divergence": (
        lambda a, lab, r: sg.kl_divergence(a["t"], a["y"], reduction=r),
        # sum_j t_j (log t_j - log y_j) cancels: its terms t_j (|log t_j| + |log y_j|)
        lambda a, lab, r, ref: (
            _rows(r, np.sum(a["t"] * (np.abs(np.log(a["t"])) + np.abs(np.log(a["y"]))), -1)),
            np.abs(ref[1]),
        ),
    ),
    "distillation_loss, T=2": (
        lambda a, lab, r: sg.distillation_loss(a["x"], a["v"], 2.0, reduction=r),
        lambda a, lab, r, ref: _distillation_magnitudes(a, r, 2.0),
    ),
    "z_loss": (
        lambda a, lab, r: sg.z_loss(a["z"], reduction=r),
        # lse = m + log(sum): its terms |m| + log(sum) <= max|z| + log n
        lambda a, lab, r, ref: _z_magnitudes(a["z"], r),
    ),
}


def _rows(reduction, rows):
    """The reduction of non-negative per-row magnitudes."""
    return {"none": rows, "sum": np.sum(rows), "mean": np.mean(rows)}[reduction]


def _distillation_magnitudes(a, reduction, temp):
    y, t = sg.softmax(a["x"] / temp), sg.softmax(a["v"] / temp)
    kl_terms = np.sum(t * (np.abs(np.log(t)) + np.abs(np.log(y))), axis=-1)
    return temp**2 * _rows(reduction, kl_terms), _scale(reduction, B) * temp * (y + t)


def _z_magnitudes(x, reduction):
    lse_terms = np.max(np.abs(x), axis=-1) + np.log(x.shape[-1])
    y = sg.softmax(x)
    return _rows(reduction, lse_terms**2), 2 * _scale(reduction, B) * lse_terms[:, None] * y


REDUCTIONS = ["mean", "sum", "none"]
NAMED_REDUCTIONS = [
    (name, r) for name in CASES for r in (["mean"] if name == "mse" else REDUCTIONS)
]


@pytest.mark.parametrize("dtype", HALVES, ids=str)
@pytest.mark.parametrize(("name", "reduction"), NAMED_REDUCTIONS)
def test_loss_and_gradient_are_float64_rounded_once(name, reduction, dtype):
    loss_fn, magnitudes = CASES[name]
    half, wide, labels = _data(dtype)
    loss, grad = loss_fn(half, labels, reduction)
    ref = loss_fn(wide, labels, reduction)
    m_loss, m_grad = magnitudes(wide, labels, reduction, ref)
    k = 2 * N + B + 4 * float(np.ptp(wide["x"])) + 32
    _rounded_once(loss, ref[0], m_loss, dtype, k, f"{name} loss")
    _rounded_once(grad, ref[1], m_grad, dtype, k, f"{name} gradient")


@pytest.mark.parametrize("dtype", HALVES, ids=str)
@pytest.mark.parametrize("name", list(CASES))
def test_half_result_is_the_float32_result_rounded_once(name, dtype):
    # Bitwise: the half inputs are read as float32 (exactly), the arithmetic is the float32
    # path's, and the loss and the gradient are each rounded once to the half dtype.
    loss_fn, _ = CASES[name]
    half, _, labels = _data(dtype, seed=1)
    single = {key: a.astype(np.float32) for key, a in half.items()}
    for reduction in REDUCTIONS:
        loss, grad = loss_fn(half, labels, reduction)
        loss32, grad32 = loss_fn(single, labels, reduction)
        np.testing.assert_array_equal(np.asarray(loss).view(np.uint16), _bits(loss32, dtype))
        np.testing.assert_array_equal(grad.view(np.uint16), _bits(grad32, dtype))


def _bits(a, dtype):
    return np.asarray(a).astype(dtype).view(np.uint16)


@pytest.mark.parametrize("dtype", HALVES, ids=str)
def test_70000_classes_are_finite_and_right(dtype):
    # A float16 row sum of 70000 probabilities-to-be overflows (65504 is the largest float16):
    # computed in float32, the cross-entropy and the z-loss stay finite and within one rounding.
    rng = np.random.default_rng(7)
    n, rows = 70000, 3
    x = rng.uniform(-0.01, 0.0, size=(rows, n)).astype(dtype)
    labels = rng.integers(0, n, size=rows)
    if dtype == np.float16:
        with np.errstate(over="ignore"):
            assert np.all(np.sum(np.exp(x), axis=-1, dtype=np.float16) == np.inf)
    x64 = x.astype(np.float64)
    k = 2 * 64 + rows + 4 * float(np.ptp(x64)) + 32  # pairwise row sums: depth <= 64
    for reduction in REDUCTIONS:
        for name, fn in (("softmax_cross_entropy", sg.softmax_cross_entropy), ("z_loss", None)):
            if fn is None:
                loss, grad = sg.z_loss(x, reduction=reduction)
                ref = sg.z_loss(x64, reduction=reduction)
            else:
                loss, grad = fn(x, labels, reduction=reduction)
                ref = fn(x64, labels, reduction=reduction)
            assert np.all(np.isfinite(np.asarray(loss, np.float64))), name
            assert np.all(np.isfinite(grad.astype(np.float64))), name
            # no cancellation: lse - x_k and lse^2 have terms of one sign here (x <= 0, lse > 0)
            _rounded_once(loss, ref[0], np.abs(ref[0]), dtype, k, f"{name} {reduction} loss")
            _rounded_once(grad, ref[1], np.abs(ref[1]), dtype, k, f"{name} {reduction} gradient")


@pytest.mark.parametrize("dtype", HALVES, ids=str)
def test_out_receives_the_rounded_gradient_and_must_have_the_half_dtype(dtype):
    half, _, labels = _data(dtype)
    x, y, t = half["x"], half["y"], half["t"]
    for fn, args in (
        (sg.softmax_cross_entropy, (x, labels)),
        (sg.cross_entropy, (y, t)),
        (sg.focal_loss, (y, labels)),
        (sg.kl_divergence, (t, y)),
        (sg.distillation_loss, (x, half["v"])),
        (sg.z_loss, (x,)),
    ):
        expect = fn(*args)[1]
        out = np.full(x.shape, np.nan, dtype)
        res = fn(*args, out=out)[1]
        assert res is out
        np.testing.assert_array_equal(out.view(np.uint16), expect.view(np.uint16))
        for wrong in (np.float32, HALVES[1] if dtype == HALVES[0] else HALVES[0]):
            message = (
                rf"out must have shape \({B}, {N}\) and dtype {dtype} like the gradient "
                rf"\({dtype} inputs give a {dtype} gradient\), got shape \({B}, {N}\) and "
                rf"dtype {np.dtype(wrong)}"
            )
            with pytest.raises(ValueError, match=message):
                fn(*args, out=np.empty(x.shape, wrong))
        with pytest.raises(ValueError, match="out must not overlap an input"):
            fn(*args, out=args[0])


def test_mixed_dtypes_and_weights():
    half, _, labels = _data(np.float16)
    x16, t16, w16 = half["x"], half["t"], half["w"]
    # class weights of any floating dtype leave the result in the logits' dtype
    for w in (w16, w16.astype(ml_dtypes.bfloat16), w16.astype(np.float32), w16.astype(float)):
        loss, grad = sg.softmax_cross_entropy(x16, labels, weight=w)
        assert loss.dtype == grad.dtype == np.float16
    loss32, _ = sg.softmax_cross_entropy(x16.astype(np.float32), labels, weight=w16)
    assert loss32.dtype == np.float32
    # a half scalar alpha, gamma or temperature is a real number like any other
    bf = ml_dtypes.bfloat16
    assert sg.focal_loss(half["y"], labels, bf(2), alpha=bf(0.5))[0].dtype == np.float16
    assert sg.distillation_loss(x16, half["v"], np.float16(2))[1].dtype == np.float16
    # a soft target of another dtype: half arrays read as float32, then the float32 rules
    assert sg.cross_entropy(half["y"], t16.astype(bf))[1].dtype == np.float32
    assert sg.kl_divergence(t16.astype(np.float32), half["y"])[0].dtype == np.float32
    assert sg.mse(half["y"], t16.astype(float))[0].dtype == np.float64


@pytest.mark.parametrize("dtype", HALVES, ids=str)
def test_labels_stay_integers(dtype):
    half, _, labels = _data(dtype)
    for fn in (sg.cross_entropy, sg.softmax_cross_entropy, sg.focal_loss):
        with pytest.raises(TypeError, match=rf"labels must be integers .* got dtype {dtype}"):
            fn(half["y"], labels.astype(dtype))
