r"""Losses that return their value and their gradient, to compose with any layer's backward.

Probabilities and logits have shape (..., n) with the classes on the last axis; integer labels
have the leading shape (...) and hold class indices in ``[0, n)``. The B = labels.size entries
of the leading axes are the rows. A loss on probabilities returns ``(loss, dloss_dy)``, which
:func:`softmax_grad.softmax_vjp` turns into the gradient for the logits, whatever the loss. Where
frameworks fuse the loss with softmax, a twin on logits returns ``(loss, dloss_dlogits)``
directly.

``reduction`` has PyTorch's meaning: ``"none"`` gives one loss per row (shape (...)) and
``dloss_dy[r] = ∂loss_r/∂y_r`` (rows are independent, so an upstream gradient g of shape (...)
is applied as ``g[..., None] * dloss_dy``); ``"sum"`` adds the rows; ``"mean"`` divides that
sum by the number of rows, or for class-weighted cross-entropy with integer labels by the sum
of the weights of the rows' true classes (ignored rows excluded), as
``torch.nn.functional.cross_entropy`` does.

Every function but :func:`mse` takes ``out=``, an array of the gradient's shape and dtype that
receives the gradient, so repeated calls need not allocate it.

Half precision: when a loss's floating arrays of the scores' shape (the probabilities or logits,
and a probability target, ``target_probs`` or the teacher's logits; class weights do not count)
all have one half dtype, float16 or bfloat16 (``ml_dtypes``), the loss is computed in float32
and both the loss value and the gradient are rounded once to that dtype, as
``torch.nn.functional.cross_entropy`` returns a bfloat16 loss for bfloat16 logits. The float32
sums stay finite and accurate where float16 sums would overflow (a row of 70000 classes), but
the value itself must fit the dtype: a ``reduction="sum"`` beyond 65504 is ``inf`` in float16.
``out=`` must then have the half dtype; the float32 gradient is rounded into it. With mixed
dtypes the half arrays are read as float32 and the float32 rules apply (as in
:func:`softmax_grad.softmax_vjp`). Labels stay integers; class weights (``weight``, ``alpha``)
may have any floating dtype, half included, and are converted to the working precision.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._validation import HALF_DTYPES, as_working, returned, same_shape
from .forward import _exp_sum, _shifted, log_softmax

_REDUCTIONS = ("mean", "sum", "none")


def mse(y, target) -> tuple[np.floating, np.ndarray]:
    r"""Mean squared error :math:`L = \frac{1}{N}\sum (y - t)^2` over all N elements.

    Returns
    -------
    loss : NumPy scalar
        Complex for complex input, so the loss works with complex-step differentiation.
    dloss_dy : ndarray, shape of ``y``
        :math:`2(y - t)/N`. Half precision as in the module docstring.
    """
    (y, target), back = as_working([y, target], ["y", "target"])
    same_shape(y, target, "y", "target")
    if y.size == 0:
        raise ValueError("mse needs at least one element, got an empty array")
    diff = y - target
    return returned(np.mean(diff**2), back), returned(2 * diff / y.size, back)


# --- argument checks ----------------------------------------------------------------------------


def _check_reduction(reduction) -> str:
    if not isinstance(reduction, str) or reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of 'mean', 'sum', 'none', got {reduction!r}")
    return reduction


def _real_number(value, name: str) -> float:
    half = isinstance(value, np.generic) and value.dtype in HALF_DTYPES  # bfloat16 scalars too
    if not half and (
        isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating))
    ):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    return float(value)


def _check_smoothing(label_smoothing) -> float:
    eps = _real_number(label_smoothing, "label_smoothing")
    if not 0 <= eps <= 1:  # also rejects NaN
        raise ValueError(f"label_smoothing must lie in [0, 1], got {eps}")
    return eps


def _class_weight(weight, n: int, dtype, name: str = "weight") -> np.ndarray | None:
    """``None``, or a non-negative real array of shape (n,) in ``dtype`` (any floating input,
    half precision included)."""
    if weight is None:
        return None
    (w,), _ = as_working([weight], [name])
    if w.dtype.kind == "c":
        raise TypeError(f"{name} must be real, got dtype {w.dtype}")
    if w.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), one entry per class, got shape {w.shape}")
    bad = ~(w >= 0)  # negative or NaN
    if np.any(bad):
        k = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} must be non-negative, got {w[k]} for class {k}")
    return w.astype(dtype, copy=False)


class _Gradient(NamedTuple):
    """Where the gradient is computed (``work``, in the working dtype) and, for half-precision
    inputs, the dtype it is rounded to and the caller's ``out`` that receives it (or None)."""

    work: np.ndarray
    back: np.dtype | None
    out: np.ndarray | None


def _check_out(out, like: np.ndarray, back, inputs: tuple) -> _Gradient:
    """Check ``out`` against the gradient's shape (``like``'s) and dtype (``back`` for half
    inputs, else ``like``'s); ``inputs`` are the arrays as given, which ``out`` must not overlap.
    """
    dtype = like.dtype if back is None else back
    if out is not None:
        if not isinstance(out, np.ndarray):
            raise TypeError(f"out must be a numpy.ndarray or None, got {type(out).__name__}")
        if out.shape != like.shape or out.dtype != dtype:
            why = "" if back is None else f" ({back} inputs give a {back} gradient)"
            raise ValueError(
                f"out must have shape {like.shape} and dtype {dtype} like the gradient{why}, "
                f"got shape {out.shape} and dtype {out.dtype}"
            )
        if not out.flags.writeable:
            raise ValueError("out must be writeable, got a read-only array")
        if any(np.may_share_memory(out, a) for a in inputs):
            raise ValueError("out must not overlap an input; pass a separate array")
    if back is None:
        return _Gradient(np.empty(like.shape, dtype) if out is None else out, None, None)
    return _Gradient(np.empty(like.shape, like.dtype), back, out)


def _done(loss, grad: _Gradient):
    """``(loss, gradient)``, both rounded once to the half dtype of the inputs, if any."""
    if grad.back is None:
        return loss, grad.work
    if grad.out is None:
        return returned(loss, grad.back), returned(grad.work, grad.back)
    grad.out[...] = grad.work  # the same rounding as astype: to nearest, ties to even
    return returned(loss, grad.back), grad.out


class _Target(NamedTuple):
    """Integer labels (ignored rows replaced by class 0) with the mask of rows that count, or
    a probability target (``soft``) of the scores' shape."""

    labels: np.ndarray | None
    valid: np.ndarray
    soft: np.ndarray | None


def _labels(labels, scores: np.ndarray, name: str, ignore_index=None) -> np.ndarray:
    """Check integer labels of shape scores.shape[:-1] with values in [0, n) or ignore_index."""
    if scores.ndim == 0:
        raise ValueError(f"{name} must have shape (..., n) with classes last, got a 0-d array")
    lab = np.asarray(labels)
    if lab.dtype.kind not in "iu":
        raise TypeError(
            f"labels must be integers (class indices) of shape {scores.shape[:-1]}, or "
            f"probabilities of {name}'s shape {scores.shape}; got dtype {lab.dtype} and shape "
            f"{lab.shape}"
        )
    if lab.shape != scores.shape[:-1]:
        raise ValueError(
            f"labels must have shape {scores.shape[:-1]} (the leading axes of {name}.shape="
            f"{scores.shape}), got labels.shape={lab.shape}"
        )
    if lab.size == 0:
        raise ValueError("the loss needs at least one label, got none")
    n = scores.shape[-1]
    bad = (lab < 0) | (lab >= n)
    if ignore_index is not None:
        bad &= lab != ignore_index
    if np.any(bad):
        extra = "" if ignore_index is None else f" or equal ignore_index={ignore_index}"
        raise ValueError(
            f"labels must lie in [0, {n}) for {n} classes{extra}, got {lab[bad].ravel()[0]}"
        )
    return lab


def _is_soft(t: np.ndarray, scores: np.ndarray) -> bool:
    """Whether ``t`` is a probability target: floating (half included), of the scores' shape."""
    floating = t.dtype.kind == "f" or t.dtype in HALF_DTYPES
    return floating and scores.ndim > 0 and t.shape == scores.shape


def _target(target, scores: np.ndarray, name: str, ignore_index) -> _Target:
    if ignore_index is not None and (
        isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer))
    ):
        raise TypeError(f"ignore_index must be an int or None, got {type(ignore_index).__name__}")
    t = np.asarray(target)
    if _is_soft(t, scores):
        if ignore_index is not None:
            raise ValueError(
                "ignore_index applies to integer labels, not to probability targets; "
                "pass ignore_index=None"
            )
        if t.size == 0:
            raise ValueError("the loss needs at least one row, got an empty target")
        return _Target(None, np.ones(t.shape[:-1], bool), t.astype(scores.dtype, copy=False))
    lab = _labels(t, scores, name, ignore_index)
    valid = np.ones(lab.shape, bool) if ignore_index is None else lab != ignore_index
    return _Target(np.where(valid, lab, 0), valid, None)


# --- shared pieces of the cross-entropies ---------------------------------------------------------


def _row_scale(valid: np.ndarray, w_k, reduction: str, dtype) -> tuple[np.ndarray, np.ndarray]:
    """The factor of each row's gradient and the divisor of the summed loss.

    ``w_k`` is each row's weight in the mean's denominator (1 without class weights, the true
    class's weight with them, as PyTorch divides by the weights of the non-ignored rows).
    """
    rdt = np.empty(0, dtype).real.dtype
    if reduction != "mean":
        return valid.astype(rdt), rdt.type(1)
    denom = np.sum(np.where(valid, w_k, 0), dtype=rdt)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(valid, 1 / denom, 0).astype(rdt), denom


def _reduce(loss_rows: np.ndarray, valid: np.ndarray, reduction: str, denom):
    rows = np.where(valid, loss_rows, 0)
    if reduction == "none":
        return rows
    total = np.sum(rows)
    if reduction == "sum":
        return total
    with np.errstate(divide="ignore", invalid="ignore"):
        return total / denom  # NaN when every row is ignored, as in PyTorch


def _soft_weights(t: np.ndarray, w, eps: float, n: int) -> np.ndarray:
    """``w ⊙ ((1 - ε) t + ε/n)``: the coefficient of each ``-log y_j``."""
    tp = t if eps == 0 else (1 - eps) * t + eps / n
    return tp if w is None else tp * w


def _mean_rows(target: _Target, reduction: str, dtype):
    """Row factors for losses whose mean is over all rows (probability targets, focal, ...)."""
    return _row_scale(target.valid, 1, reduction, dtype)


def _hard_coefficients(lab, w, eps: float, n: int, dtype):
    """Per-row ``c_r = (1 - ε) w_{k_r}``, ``w_{k_r}`` and the total weight ``W = Σ_j w_j``."""
    if w is None:
        w_k = np.ones(lab.shape, np.empty(0, dtype).real.dtype)
        total_w = n
    else:
        w_k = w.real[lab]
        total_w = np.sum(w)
    return (1 - eps) * w_k, w_k, total_w


# --- cross-entropy ------------------------------------------------------------------------------


def _ce_arguments(scores, name, labels, weight, ignore_index, label_smoothing, reduction, out):
    """Checked arguments of both cross-entropies: (scores, target, weight, smoothing, gradient);
    a probability target joins the scores in the half-precision rule."""
    soft = _is_soft(np.asarray(labels), np.asarray(scores))
    given = (scores, labels) if soft else (scores,)  # what out= must not overlap
    arrays, back = as_working(list(given), [name, "labels"][: len(given)])
    scores = arrays[0]
    _check_reduction(reduction)
    eps = _check_smoothing(label_smoothing)
    tgt = _target(arrays[-1] if soft else labels, scores, name, ignore_index)
    w = _class_weight(weight, scores.shape[-1], scores.dtype)
    return scores, tgt, w, eps, _check_out(out, scores, back, given)


def cross_entropy(
    probs,
    labels,
    *,
    weight=None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    out=None,
):
    r"""Cross-entropy of probabilities, with PyTorch's options.

    With integer labels :math:`k_r`, class weights :math:`w` and smoothing :math:`\lambda`, row
    :math:`r` contributes :math:`\ell_r = -(1-\lambda)\,w_{k_r}\log y_{r k_r}
    - \frac{\lambda}{n}\sum_j w_j \log y_{rj}` (0 for a row whose label is ``ignore_index``).
    With a probability target :math:`t` (``labels`` a float array of ``probs``' shape),
    :math:`\ell_r = -\sum_j w_j t'_{rj}\log y_{rj}` with :math:`t' = (1-\lambda)t + \lambda/n`.
    The loss is :math:`\sum_r \ell_r` divided, for ``reduction="mean"``, by
    :math:`\sum_{r\,\text{not ignored}} w_{k_r}` (integer labels) or by the number of rows
    (probability targets), exactly as ``torch.nn.functional.cross_entropy`` with the classes on
    the last axis.

    Parameters
    ----------
    probs : array_like, shape (..., n)
        Probabilities :math:`y`, for example ``softmax(x)``; float16 and bfloat16 are
        computed in float32, the loss and the gradient rounded once to that dtype (see the
        module docstring).
    labels : array_like of int, shape (...), or of float, shape (..., n)
        True classes :math:`k_r`, or probability targets :math:`t`.
    weight : array_like, shape (n,), optional
        Non-negative class weights :math:`w`.
    ignore_index : int, optional
        Rows whose label equals it add nothing to the loss, its gradient or the mean's
        denominator (integer labels only).
    label_smoothing : float in [0, 1], default 0
        :math:`\lambda`.
    reduction : {"mean", "sum", "none"}
    out : ndarray, optional
        Receives ``dloss_dy``.

    Returns
    -------
    loss : NumPy scalar, or ndarray of shape (...) for ``reduction="none"``
        ``inf`` if a probability the loss takes the log of is 0.
    dloss_dy : ndarray, shape of ``probs``
        :math:`\partial L/\partial y`; for ``"none"``, row r holds
        :math:`\partial\ell_r/\partial y_r`. With integer labels and :math:`\lambda = 0` it is
        :math:`-w_{k_r}/(D\,y_{r k_r})` at each true class and 0 elsewhere (:math:`D` the mean's
        denominator, 1 for ``"sum"`` and ``"none"``).

    Raises
    ------
    ValueError, TypeError
        Labels out of range, not integers or of the wrong shape; a weight of the wrong length or
        negative; smoothing outside [0, 1]; an unknown reduction; an unusable ``out``.
    """
    probs, tgt, w, eps, grad = _ce_arguments(
        probs, "probs", labels, weight, ignore_index, label_smoothing, reduction, out
    )
    out = grad.work
    n = probs.shape[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        if tgt.soft is not None:
            scale, denom = _mean_rows(tgt, reduction, probs.dtype)
            wt = _soft_weights(tgt.soft, w, eps, n)
            zero = wt == 0  # 0 log 0 = 0, as PyTorch's log-probabilities never are -inf there
            loss_rows = -np.sum(np.where(zero, 0, wt * np.log(probs)), axis=-1)
            np.divide(wt, probs, out=out)
            out *= -scale[..., None]
            np.copyto(out, 0, where=zero)
            return _done(_reduce(loss_rows, tgt.valid, reduction, denom), grad)
        c, w_k, _ = _hard_coefficients(tgt.labels, w, eps, n, probs.dtype)
        scale, denom = _row_scale(tgt.valid, w_k, reduction, probs.dtype)
        idx = tgt.labels[..., None]
        p_k = np.take_along_axis(probs, idx, axis=-1)[..., 0]
        loss_rows = -c * np.log(p_k)
        if eps > 0:
            wv = 1 if w is None else w
            loss_rows = loss_rows - eps / n * np.sum(wv * np.log(probs), axis=-1)
            np.divide(wv, probs, out=out)
            out *= (-eps / n * scale)[..., None]
            np.copyto(out, 0, where=~tgt.valid[..., None])
        else:
            out.fill(0)
        grad_k = -scale * (c + eps / n * w_k) / p_k
    np.put_along_axis(out, idx, grad_k[..., None].astype(out.dtype, copy=False), axis=-1)
    return _done(_reduce(loss_rows, tgt.valid, reduction, denom), grad)


def softmax_cross_entropy(
    logits,
    labels,
    *,
    weight=None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    out=None,
):
    r"""Fused softmax + cross-entropy on logits: :func:`cross_entropy` of ``softmax(logits)``.

    The loss goes through log-sum-exp, :math:`\log y_j = x_j - \log\sum_i e^{x_i}`, so it is
    finite for any finite logits. The options and the reduction are those of
    :func:`cross_entropy` (and of ``torch.nn.functional.cross_entropy``).

    The gradient of row :math:`r` (integer label :math:`k`, factor :math:`s_r` of the reduction)
    is :math:`s_r\bigl[c_r(y_j - \delta_{jk}) + \frac{\lambda}{n}(W y_j - w_j)\bigr]` with
    :math:`c_r = (1-\lambda) w_k` and :math:`W = \sum_j w_j` (without weights,
    :math:`y - \text{onehot}` shifted by :math:`\lambda(\delta_{jk} - 1/n)`). At the true class
    :math:`y_k - 1` is always computed as :math:`-\sum_{j \ne k} y_j`: the direct subtraction
    cancels when :math:`y_k` is near 1 (and gives 0, a 100 % error, once :math:`y_k` rounds to
    1), while the sum keeps a relative error of a few :math:`n u` for every :math:`y_k`. It is
    always on, with no keyword, because it costs no pass over the row more than the direct
    :math:`y - \text{onehot}`: the sum of the other entries is the one sum over
    :math:`e^{x_j - m}` the softmax needs anyway (the true class set to 0 in it), and the total
    is that sum plus :math:`e^{x_k - m}`. Measured against the direct form at 64 x 1000 and
    1024 x 1024, float32 and float64, the difference was within the timing noise, below the
    5 % of issue 12 (``python bench/ce_true_class_cost.py``; bench/README.md, "Design
    measurements"). With a probability target the gradient is
    :math:`s_r(y_j \sum_i w_i t'_i - w_j t'_j)`.

    Parameters
    ----------
    logits : array_like, shape (..., n)
        Logits :math:`x`; float16 and bfloat16 are computed in float32, the loss and the
        gradient rounded once to that dtype (see the module docstring).
    labels, weight, ignore_index, label_smoothing, reduction
        As in :func:`cross_entropy`.
    out : ndarray, optional
        Receives ``dloss_dlogits``.

    Returns
    -------
    loss : NumPy scalar, or ndarray of shape (...) for ``reduction="none"``
    dloss_dlogits : ndarray, shape of ``logits``
        Equal to ``softmax_vjp(y, cross_entropy(y, labels, ...)[1])`` with
        ``y = softmax(logits)``.
    """
    logits, tgt, w, eps, grad = _ce_arguments(
        logits, "logits", labels, weight, ignore_index, label_smoothing, reduction, out
    )
    out = grad.work
    n = logits.shape[-1]
    shifted, _ = _shifted(logits, -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        e = np.exp(shifted, out=out)
        if tgt.soft is None:
            # y_k - 1 = -(sum of the other entries) / total. That sum is the one pass over e,
            # with the true class zeroed (that entry of ``out`` is overwritten at the end), and
            # total = rest + e_k: the accurate true class costs no second pass.
            idx = tgt.labels[..., None]
            e_k = np.take_along_axis(e, idx, axis=-1)[..., 0]
            np.put_along_axis(e, idx, 0, axis=-1)
            rest = np.sum(e, axis=-1)
            total = (rest + e_k)[..., None]
        else:
            total = np.sum(e, axis=-1, keepdims=True)
        total = np.where(np.isposinf(total.real), np.nan, total)  # a +inf logit: NaN row
        log_total = np.log(total)[..., 0]
        if tgt.soft is not None:
            scale, denom = _mean_rows(tgt, reduction, logits.dtype)
            wt = _soft_weights(tgt.soft, w, eps, n)
            logp = shifted - log_total[..., None]
            loss_rows = -np.sum(np.where(wt == 0, 0, wt * logp), axis=-1)
            s = scale[..., None]
            np.divide(e, total, out=out)
            out *= np.sum(wt, axis=-1, keepdims=True) * s
            out -= wt * s
            return _done(_reduce(loss_rows, tgt.valid, reduction, denom), grad)
        c, w_k, total_w = _hard_coefficients(tgt.labels, w, eps, n, logits.dtype)
        scale, denom = _row_scale(tgt.valid, w_k, reduction, logits.dtype)
        shifted_k = np.take_along_axis(shifted, idx, axis=-1)[..., 0]
        loss_rows = -c * (shifted_k - log_total)
        if eps > 0:
            wsum = np.sum(shifted, axis=-1) if w is None else np.einsum("...j,j->...", shifted, w)
            loss_rows = loss_rows - eps / n * (wsum - total_w * log_total)
        t_ = total[..., 0]
        p_k, a_k = e_k / t_, -rest / t_
        np.divide(e, total, out=out)
        out *= (scale * (c + eps / n * total_w))[..., None]
        if eps > 0:
            out -= (eps / n * scale)[..., None] * (1 if w is None else w)
        grad_k = scale * (c * a_k + eps / n * (total_w * p_k - w_k))
    np.put_along_axis(out, idx, grad_k[..., None].astype(out.dtype, copy=False), axis=-1)
    return _done(_reduce(loss_rows, tgt.valid, reduction, denom), grad)


# --- other losses -------------------------------------------------------------------------------


def focal_loss(probs, labels, gamma: float = 2.0, *, alpha=None, reduction: str = "mean", out=None):
    r"""Multi-class focal loss (Lin et al. 2017): :math:`-\alpha_k (1-y_k)^\beta \log y_k` per row.

    :math:`k = k_r` is row r's true class and :math:`\beta` the focusing exponent (``gamma``, the
    paper's :math:`\gamma`); :math:`\beta = 0` with no ``alpha`` is cross-entropy. The mean is
    over all rows.

    Parameters
    ----------
    probs : array_like, shape (..., n)
        Probabilities :math:`y`; float16 and bfloat16 are computed in float32, the loss and the
        gradient rounded once to that dtype (see the module docstring).
    labels : array_like of int, shape (...)
        True classes.
    gamma : float >= 0, default 2
        :math:`\beta`.
    alpha : float or array_like of shape (n,), optional
        Non-negative class weights :math:`\alpha_k` (a number weights every class alike).
    reduction : {"mean", "sum", "none"}
    out : ndarray, optional
        Receives ``dloss_dy``.

    Returns
    -------
    loss : NumPy scalar, or ndarray of shape (...) for ``reduction="none"``
    dloss_dy : ndarray, shape of ``probs``
        At the true class
        :math:`s_r\alpha_k\bigl(\beta (1-y_k)^{\beta-1}\log y_k - (1-y_k)^\beta / y_k\bigr)`
        (the first term taken as its limit 0 where :math:`y_k = 1`), 0 elsewhere.
    """
    given = (probs,)
    (probs,), back = as_working([probs], ["probs"])
    reduction = _check_reduction(reduction)
    beta = _real_number(gamma, "gamma")
    if not 0 <= beta < np.inf:
        raise ValueError(f"gamma must be a finite number >= 0, got {beta}")
    tgt = _target(labels, probs, "probs", None)
    if tgt.soft is not None:
        raise TypeError("focal_loss takes integer labels, not probability targets")
    n = probs.shape[-1]
    if alpha is not None and np.ndim(alpha) == 0:
        alpha = np.full(n, _real_number(alpha, "alpha"))
    a = _class_weight(alpha, n, probs.dtype, "alpha")
    grad = _check_out(out, probs, back, given)
    out = grad.work
    scale, denom = _mean_rows(tgt, reduction, probs.dtype)
    idx = tgt.labels[..., None]
    p_k = np.take_along_axis(probs, idx, axis=-1)[..., 0]
    a_k = 1 if a is None else a.real[tgt.labels]
    with np.errstate(divide="ignore", invalid="ignore"):
        q = 1 - p_k
        log_p = np.log(p_k)
        loss_rows = -a_k * q**beta * log_p
        focus = np.where(q == 0, 0, beta * q ** (beta - 1) * log_p)
        grad_k = scale * a_k * (focus - q**beta / p_k)
    out.fill(0)
    np.put_along_axis(out, idx, grad_k[..., None].astype(out.dtype, copy=False), axis=-1)
    return _done(_reduce(loss_rows, tgt.valid, reduction, denom), grad)


def _check_rows(a: np.ndarray, name: str) -> None:
    if a.ndim == 0 or a.size == 0:
        raise ValueError(f"{name} must have shape (..., n) with at least one row, got {a.shape}")


def kl_divergence(target_probs, probs, *, reduction: str = "mean", out=None):
    r"""Kullback-Leibler divergence of ``probs`` from the target: :math:`\sum_j t_j\log(t_j/y_j)`.

    Terms with :math:`t_j = 0` are 0. ``reduction="mean"`` divides the sum by the number of rows:
    PyTorch's ``F.kl_div(log(y), t, reduction="batchmean")``; ``"none"`` gives one value per row
    (``F.kl_div(..., reduction="none").sum(-1)``).

    Parameters
    ----------
    target_probs : array_like, shape (..., n)
        The target distribution :math:`t` (held fixed: no gradient is returned for it).
    probs : array_like, same shape
        Probabilities :math:`y`; float16 and bfloat16 are computed in float32, the loss and the
        gradient rounded once to that dtype (see the module docstring).
    reduction : {"mean", "sum", "none"}
    out : ndarray, optional
        Receives ``dloss_dy``.

    Returns
    -------
    loss : NumPy scalar, or ndarray of shape (...) for ``reduction="none"``
    dloss_dy : ndarray, shape of ``probs``
        :math:`-s_r t_j / y_j` (0 where :math:`t_j = 0`).
    """
    given = (target_probs, probs)
    (t, probs), back = as_working([target_probs, probs], ["target_probs", "probs"])
    same_shape(t, probs, "target_probs", "probs")
    _check_rows(probs, "probs")
    reduction = _check_reduction(reduction)
    tgt = _Target(None, np.ones(probs.shape[:-1], bool), t)
    grad = _check_out(out, probs, back, given)
    out = grad.work
    scale, denom = _mean_rows(tgt, reduction, probs.dtype)
    zero = t == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        loss_rows = np.sum(np.where(zero, 0, t * (np.log(t) - np.log(probs))), axis=-1)
        np.divide(t, probs, out=out)
    out *= -scale[..., None]
    np.copyto(out, 0, where=zero)
    return _done(_reduce(loss_rows, tgt.valid, reduction, denom), grad)


def distillation_loss(
    student_logits, teacher_logits, temperature: float = 1.0, *, reduction: str = "mean", out=None
):
    r"""Knowledge distillation (Hinton et al. 2015): :math:`T^2\,\mathrm{KL}(t \,\|\, y)` on logits.

    :math:`t = \operatorname{softmax}(v/T)` from the teacher's logits :math:`v`,
    :math:`y = \operatorname{softmax}(x/T)` from the student's :math:`x`. The factor
    :math:`T^2` keeps the gradient's size independent of :math:`T`: the gradient with respect
    to the student's logits is :math:`s_r\,T\,(y - t)`. Composed by hand it is
    ``softmax_vjp(y, kl_divergence(t, y)[1]) * T`` (the chain rule through
    :math:`x \mapsto x/T`), times :math:`T^2`.

    Parameters
    ----------
    student_logits, teacher_logits : array_like, same shape (..., n)
        :math:`x` and :math:`v`; float16 and bfloat16 are computed in float32, the loss and the
        gradient rounded once to that dtype (see the module docstring).
    temperature : float > 0, default 1
        :math:`T`.
    reduction : {"mean", "sum", "none"}
        As in :func:`kl_divergence`.
    out : ndarray, optional
        Receives ``dloss_dlogits``.

    Returns
    -------
    loss : NumPy scalar, or ndarray of shape (...) for ``reduction="none"``
    dloss_dlogits : ndarray, shape of ``student_logits``
    """
    given = (student_logits, teacher_logits)
    (x, v), back = as_working(
        [student_logits, teacher_logits], ["student_logits", "teacher_logits"]
    )
    same_shape(x, v, "student_logits", "teacher_logits")
    _check_rows(x, "student_logits")
    reduction = _check_reduction(reduction)
    temp = _real_number(temperature, "temperature")
    if not 0 < temp < np.inf:
        raise ValueError(f"temperature must be a finite number > 0, got {temp}")
    grad = _check_out(out, x, back, given)
    out = grad.work
    tgt = _Target(None, np.ones(x.shape[:-1], bool), None)
    scale, denom = _mean_rows(tgt, reduction, x.dtype)
    log_y, log_t = log_softmax(x / temp), log_softmax(v / temp)
    t = np.exp(log_t)
    with np.errstate(invalid="ignore"):
        kl_rows = np.sum(np.where(t == 0, 0, t * (log_t - log_y)), axis=-1)
    np.exp(log_y, out=out)
    out -= t
    out *= (temp * scale)[..., None]
    return _done(_reduce(temp**2 * kl_rows, tgt.valid, reduction, denom), grad)


def z_loss(logits, *, reduction: str = "mean", out=None):
    r"""The z-loss :math:`\ell_r = \bigl(\log\sum_j e^{x_{rj}}\bigr)^2` that keeps logits centred.

    It depends on the log-sum-exp :math:`\operatorname{lse}(x) = \log\sum_j e^{x_j}`, not on
    :math:`y` alone: adding a constant to every logit changes it but not :math:`y`. So its
    gradient cannot come from a ``dloss_dy`` through :func:`softmax_grad.softmax_vjp` (every
    row of a softmax VJP sums to 0). It goes through log-sum-exp instead, whose gradient is
    :math:`\partial\operatorname{lse}/\partial x = y`: :math:`\partial\ell_r/\partial x_r =
    2\operatorname{lse}(x_r)\,y_r`. In a total loss such as cross-entropy plus a multiple of
    the z-loss, the two logits gradients add.

    Parameters
    ----------
    logits : array_like, shape (..., n)
        Logits :math:`x`; float16 and bfloat16 are computed in float32, the loss and the
        gradient rounded once to that dtype (see the module docstring).
    reduction : {"mean", "sum", "none"}
        ``"mean"`` averages over the rows.
    out : ndarray, optional
        Receives ``dloss_dlogits``.

    Returns
    -------
    loss : NumPy scalar, or ndarray of shape (...) for ``reduction="none"``
    dloss_dlogits : ndarray, shape of ``logits``
        :math:`2 s_r \operatorname{lse}(x_r)\, y_r`.
    """
    given = (logits,)
    (x,), back = as_working([logits], ["logits"])
    _check_rows(x, "logits")
    reduction = _check_reduction(reduction)
    grad = _check_out(out, x, back, given)
    out = grad.work
    tgt = _Target(None, np.ones(x.shape[:-1], bool), None)
    scale, denom = _mean_rows(tgt, reduction, x.dtype)
    shifted, e, total = _exp_sum(x, -1)
    # lse = m + log(total) with m the shift _exp_sum used; x_j - shifted_j recovers m exactly
    # at the row's maximum (the shift is exact there), so take it at the argmax.
    at_max = np.argmax(x.real, axis=-1)[..., None]
    m = np.take_along_axis(x, at_max, axis=-1) - np.take_along_axis(shifted, at_max, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        lse = (m + np.log(total))[..., 0]
        np.divide(e, total, out=out)
    out *= (2 * scale * lse)[..., None]
    return _done(_reduce(lse**2, tgt.valid, reduction, denom), grad)
