r"""The softmax and log-softmax functions, computed stably along one axis.

Non-finite logits follow one convention, the one PyTorch, JAX and SciPy also produce:

- ``-inf`` is a mask: that entry gets probability exactly 0 (log-probability ``-inf``), and the
  other entries are the softmax of the rest.
- A row containing ``+inf`` has no defined softmax: :math:`e^{\infty}/\sum_j e^{x_j}` is
  :math:`\infty/\infty`, and the limit depends on how the logits grow (one entry growing gives
  a one-hot row, several growing together any split between them). The whole row is NaN, so
  the row is visibly invalid rather than a row of zeros with NaN that does not sum to 1.
- A row containing NaN, or of only ``-inf`` (nothing left to normalise), is NaN throughout.

The backward pass (:mod:`softmax_grad.vjp`) propagates those NaN rows: a NaN anywhere in a row
of ``y`` makes the row's dot product, hence the whole row of ``dx``, NaN.

Masks (``where=``, a boolean array broadcasting against ``x``; True keeps an entry) say the same
as a ``-inf`` logit, with two differences that padding needs: a masked entry's value is never
read (NaN or ``+inf`` there change nothing), and a row with no entry kept (a padding row) gives
probability 0 everywhere and log-probability ``-inf`` everywhere, with no warning, where a row
of only ``-inf`` logits is NaN. ``-inf`` is the only log-probability consistent with the
probability 0 (``exp(log_softmax(x, where=m)) == softmax(x, where=m)`` on every row), and any
finite value would claim a probability; the backward passes give zeros on such rows.
"""

from __future__ import annotations

import numpy as np

from ._validation import as_float_array, as_mask, as_working, normalize_axis, returned


def _shifted(x, axis: int) -> tuple[np.ndarray, int]:
    """Return ``x - max(x)`` along ``axis``; rows whose max is not finite are left unshifted.

    Subtracting the max leaves softmax unchanged (numerator and denominator both gain the
    factor ``exp(-max)``) and keeps every exponent <= 0, so ``exp`` never overflows.
    """
    x = as_float_array(x, "x")
    ax = normalize_axis(axis, x.ndim)
    if x.shape[ax] == 0:
        return x.copy(), ax
    # Shift by the real part only: complex inputs (complex-step differentiation) stay analytic.
    m = np.max(x.real, axis=ax, keepdims=True)
    # A row of all -inf has max -inf; -inf - (-inf) is NaN, which is the documented answer,
    # but shifting by it would raise an 'invalid value' warning. Shift those rows by 0.
    m = np.where(np.isfinite(m), m, 0).astype(x.real.dtype, copy=False)
    # x - max can only overflow to -inf for a logit that softmax sends to 0 anyway.
    with np.errstate(over="ignore"):
        return x - m, ax


def _exp_sum(x, axis: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shifted logits ``x - m``, ``e = exp(x - m)`` and the row sums of ``e`` (kept as an axis).

    The sum is NaN for a row containing ``+inf`` (the only way it can be infinite, since every
    shifted exponent is <= 0), so dividing by it, or subtracting its log, makes the row NaN.
    """
    shifted, ax = _shifted(x, axis)
    with np.errstate(invalid="ignore"):
        e = np.exp(shifted)
    total = np.sum(e, axis=ax, keepdims=True)
    return shifted, e, np.where(np.isposinf(total.real), np.nan, total)


def _masked_exp_sum(x, axis: int, where):
    """:func:`_exp_sum` of ``x`` with the entries ``where`` is False set to ``-inf`` (not read);
    a row with nothing kept gets the sum 1, so it gives probability 0 and log-probability -inf.
    Half-precision ``x`` is computed in float32; the last item is the dtype to return, or None.
    """
    (x,), back = as_working([x], ["x"])
    ax = normalize_axis(axis, x.ndim)
    mask = as_mask(where, x.shape)
    if mask is None:
        return (*_exp_sum(x, ax), back)
    shifted, e, total = _exp_sum(np.where(mask, x, -np.inf), ax)
    return shifted, e, np.where(np.any(mask, axis=ax, keepdims=True), total, 1), back


def softmax(x, axis: int = -1, where=None) -> np.ndarray:
    r"""Softmax along ``axis``: :math:`y_i = e^{x_i} / \sum_j e^{x_j}`.

    Parameters
    ----------
    x : array_like, shape (..., n, ...)
        Logits. float32 stays float32, float64 stays float64, integers become float64;
        float16 and bfloat16 (``ml_dtypes``) are computed in float32 and the result is
        rounded once to the input's dtype, so sums longer than float16's range are exact.
    axis : int, default -1
        The axis that is normalised.
    where : array_like of bool, optional
        A mask broadcasting against ``x``; True keeps an entry. The sum runs over the kept
        entries only, :math:`y_i = e^{x_i} / \sum_{j\ \mathrm{kept}} e^{x_j}`. Masked entries
        get probability 0 and their values are not read; a row with nothing kept is all
        zeros (no NaN, no warning). See the module docstring.

    Returns
    -------
    y : ndarray, same shape as ``x``
        Probabilities: non-negative, summing to 1 along ``axis``. A ``-inf`` logit gets
        probability exactly 0 (masking). A row containing ``+inf`` or NaN, or of only ``-inf``,
        has no defined softmax and is NaN in every entry (see the module docstring).

    Raises
    ------
    TypeError
        If ``where`` is not boolean.
    ValueError
        If ``where`` does not broadcast to the shape of ``x``, or ``axis`` is out of range.
    """
    _, e, total, back = _masked_exp_sum(x, axis, where)
    with np.errstate(invalid="ignore"):
        return returned(e / total, back)


def log_softmax(x, axis: int = -1, where=None) -> np.ndarray:
    r"""Log of the softmax along ``axis``: :math:`x_i - \log\sum_j e^{x_j}` (log-sum-exp).

    Parameters
    ----------
    x : array_like, shape (..., n, ...)
        Logits; dtype rules as in :func:`softmax`.
    axis : int, default -1
        The axis that is normalised.
    where : array_like of bool, optional
        A mask as in :func:`softmax`: masked entries get ``-inf``, the log of their probability
        0, and a row with nothing kept is ``-inf`` everywhere (no warning).

    Returns
    -------
    logp : ndarray, same shape as ``x``
        ``log(softmax(x))`` computed without forming the probabilities, so it stays finite
        where ``softmax`` underflows to 0. ``-inf`` logits give ``-inf``; a row containing
        ``+inf`` or NaN, or of only ``-inf``, is NaN in every entry.

    Raises
    ------
    TypeError
        If ``where`` is not boolean.
    ValueError
        If ``where`` does not broadcast to the shape of ``x``, or ``axis`` is out of range.
    """
    shifted, _, total, back = _masked_exp_sum(x, axis, where)
    with np.errstate(invalid="ignore", divide="ignore"):
        return returned(shifted - np.log(total), back)
