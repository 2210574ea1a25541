r"""The output layer over a large vocabulary, computed in vocabulary chunks.

A language model's head maps hidden states :math:`\mathbf H`, shape (B, d), through output
weights :math:`\mathbf W`, shape (n, d), to logits :math:`X = \mathbf H\mathbf W^\top`, shape
(B, n), and takes the cross-entropy of their softmax against labels :math:`k_r`, shape (B,).
With a vocabulary of :math:`n = 128256` tokens, :math:`X` and its gradient are the largest arrays
of the step. :func:`~softmax_grad.vocab_head_cross_entropy` never holds them: it visits
:math:`\mathbf W` in chunks of :math:`n_c` rows, twice.

1. Forward: per chunk, the logits :math:`X_c = \mathbf H\mathbf W_c^\top` (B, :math:`n_c`) give
   their online state :math:`(m, Z)` (:func:`softmax_grad.partial_logsumexp`), merged into each
   row's running state (:func:`softmax_grad.merge_logsumexp`); the true class's logit and the
   row sum of the logits are picked up on the way. Then
   :math:`\ell_r = \operatorname{lse}_r - (1-\lambda)\,x_{rk_r} - \frac{\lambda}{n}\sum_j x_{rj}`.
2. Backward: per chunk, the logits are recomputed, turned into probabilities with the final
   :math:`\operatorname{lse}`, and the chunk's gradient of the logits
   :math:`dX_c = \bar\ell_r s_r\bigl(Y_c - (1-\lambda)\,\mathrm{onehot}_c(k_r) - \lambda/n\bigr)`
   gives :math:`d\mathbf H \mathrel{+}= dX_c\,\mathbf W_c` and
   :math:`d\mathbf W_c = dX_c^\top\mathbf H`.

Only a few blocks of B x :math:`n_c` logits are alive at a time: a chunk and the two
temporaries of :func:`softmax_grad.partial_logsumexp` in the forward pass, one chunk next to
:math:`d\mathbf H` and :math:`d\mathbf W` in the backward pass. The memory beyond the inputs
and the gradients (of the inputs' shapes) grows with :math:`n_c`, not with :math:`n`.
:func:`~softmax_grad.vocab_head_cross_entropy_naive` materialises :math:`X` and composes the
library's :func:`softmax_grad.softmax`, :func:`softmax_grad.cross_entropy` and
:func:`softmax_grad.softmax_vjp`: the reference the chunked path is tested against.

Options and conventions are those of :func:`softmax_grad.cross_entropy` with integer labels
(``ignore_index``, ``label_smoothing``, ``reduction`` as in ``torch.nn.functional.cross_entropy``;
an ignored row has loss 0 and gradient 0, and a ``"mean"`` over no row is NaN with a zero
gradient, as in PyTorch). Class weights and a bias are not supported. ``ell_bar`` is the
upstream gradient: :math:`\bar\ell_r = \partial L/\partial\ell_r`, shape (B,), for
``reduction="none"``, and the scalar :math:`\partial L'/\partial L` otherwise; the gradients
returned are those of :math:`\sum_r \bar\ell_r\ell_r`, respectively of :math:`\bar L L`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._validation import HALF_DTYPES
from .forward import softmax
from .losses import (
    _check_reduction,
    _check_smoothing,
    _real_number,
    _reduce,
    _row_scale,
    _target,
    cross_entropy,
)
from .online import finish_logsumexp, merge_logsumexp, partial_logsumexp
from .vjp import softmax_vjp

#: Rows of W per chunk of :func:`~softmax_grad.vocab_head_cross_entropy` by default.
DEFAULT_CHUNK = 4096

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class VocabHeadResult(NamedTuple):
    r"""The loss of the head and the gradients of its inputs.

    Attributes
    ----------
    loss : NumPy scalar, or ndarray of shape (B,) for ``reduction="none"``
    dH : ndarray
        :math:`\partial L/\partial\mathbf H`, shape (B, d).
    dW : ndarray
        :math:`\partial L/\partial\mathbf W`, shape (n, d).
    """

    loss: np.floating | np.ndarray
    dH: np.ndarray
    dW: np.ndarray


class _Head(NamedTuple):
    """Checked arguments: labels (ignored rows set to class 0), mask of rows that count, the
    per-row factor ℓ̄_r s_r of the logits' gradient, the mean's denominator, λ, reduction."""

    H: np.ndarray
    W: np.ndarray
    labels: np.ndarray
    valid: np.ndarray
    coef: np.ndarray
    denom: np.floating
    eps: float
    reduction: str


def _matrix(a, name: str, shape_text: str) -> np.ndarray:
    arr = np.asarray(a)
    if isinstance(a, np.ma.MaskedArray):
        raise TypeError(f"{name} is a numpy masked array; pass a plain ndarray")
    if arr.dtype not in _DTYPES:
        half = " (half precision is not supported here; convert to float32)"
        raise TypeError(
            f"{name} must be float32 or float64, got dtype {arr.dtype}"
            + (half if arr.dtype in HALF_DTYPES else "")
        )
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape {shape_text}, got shape {arr.shape}")
    return arr


def _upstream(ell_bar, reduction: str, B: int, dtype) -> np.ndarray:
    """ℓ̄ as an array of shape (B,): given for "none", a scalar broadcast otherwise."""
    if ell_bar is None:
        return np.ones(B, dtype)
    if reduction != "none":
        return np.full(B, _real_number(ell_bar, "ell_bar"), dtype)
    g = np.asarray(ell_bar)
    if g.dtype.kind not in "iuf":
        raise TypeError(f"ell_bar must be a real array of shape ({B},), got dtype {g.dtype}")
    if g.shape != (B,):
        raise ValueError(
            f"ell_bar must have shape ({B},), one upstream gradient per row of H, "
            f"got shape {g.shape}"
        )
    return g.astype(dtype)


def _arguments(H, W, labels, ell_bar, ignore_index, label_smoothing, reduction) -> _Head:
    H = _matrix(H, "H", "(B, d): one hidden state per row")
    W = _matrix(W, "W", "(n, d): one row of output weights per vocabulary entry")
    if H.dtype != W.dtype:
        raise TypeError(f"H and W must have the same dtype, got {H.dtype} and {W.dtype}")
    if H.shape[1] != W.shape[1]:
        raise ValueError(
            f"H (B, d) and W (n, d) must have the same hidden width d, got H.shape={H.shape} "
            f"and W.shape={W.shape}"
        )
    (B, _), (n, _) = H.shape, W.shape
    if B == 0 or n == 0:
        raise ValueError(
            f"the head needs at least one row and one vocabulary entry, got H.shape={H.shape} "
            f"and W.shape={W.shape}"
        )
    reduction = _check_reduction(reduction)
    eps = _check_smoothing(label_smoothing)
    # The label checks of the losses, against a stand-in for the (B, n) logits that owns no memory.
    logits = np.broadcast_to(np.zeros((), H.dtype), (B, n))
    tgt = _target(labels, logits, "logits", ignore_index)
    if tgt.soft is not None:
        raise TypeError(
            f"labels must be integers of shape ({B},); probability targets are not supported"
        )
    scale, denom = _row_scale(tgt.valid, 1, reduction, H.dtype)
    coef = (_upstream(ell_bar, reduction, B, H.dtype) * scale).astype(H.dtype)
    coef[~tgt.valid] = 0  # an ignored row's gradient is 0 even for a non-finite ell_bar
    return _Head(H, W, tgt.labels, tgt.valid, coef, denom, eps, reduction)


def _chunks(n: int, chunk) -> range:
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"chunk must be an integer >= 1 (rows of W per chunk), got {chunk!r}")
    return range(0, n, int(chunk))


def vocab_head_cross_entropy(
    H,
    W,
    labels,
    *,
    ell_bar=None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    chunk: int = DEFAULT_CHUNK,
) -> VocabHeadResult:
    r"""Cross-entropy of :math:`\operatorname{softmax}(\mathbf H\mathbf W^\top)` and its
    gradients for :math:`\mathbf H` and :math:`\mathbf W`, without materialising the logits.

    Two passes over ``W`` in chunks of ``chunk`` rows (the module docstring gives the
    formulas); at most B x ``chunk`` logits exist at a time.

    Parameters
    ----------
    H : ndarray, shape (B, d), float32 or float64
        Hidden states :math:`\mathbf H`, one per token.
    W : ndarray, shape (n, d), the dtype of ``H``
        Output weights :math:`\mathbf W`, one row per vocabulary entry.
    labels : array_like of int, shape (B,)
        True classes :math:`k_r` in ``[0, n)``, or ``ignore_index``.
    ell_bar : array_like, shape (B,) for ``reduction="none"``, else a real number; optional
        Upstream gradient :math:`\bar\ell` (default ones), respectively :math:`\bar L`
        (default 1).
    ignore_index : int, optional
        Rows with this label add nothing to the loss, the gradients or the mean's denominator.
    label_smoothing : float in [0, 1], default 0
        :math:`\lambda`.
    reduction : {"mean", "sum", "none"}
    chunk : int >= 1, default :data:`~softmax_grad.vocab_head.DEFAULT_CHUNK`
        :math:`n_c`, rows of ``W`` per chunk (need not divide n). The result does not depend
        on it beyond rounding.

    Returns
    -------
    VocabHeadResult
        ``(loss, dH, dW)`` in the dtype of ``H``.

    Raises
    ------
    TypeError, ValueError
        A dtype other than float32/float64 or two different ones; shapes that do not fit;
        labels out of range or not integers; a bad ``ell_bar``, ``chunk``, ``reduction``
        or ``label_smoothing``.
    """
    a = _arguments(H, W, labels, ell_bar, ignore_index, label_smoothing, reduction)
    H, W = a.H, a.W
    (B, d), n = H.shape, W.shape[0]
    rows = np.arange(B)
    starts = _chunks(n, chunk)
    step = int(chunk)

    # Pass 1: the online state (m, Z) of each row, its true-class logit, its sum of logits.
    state = partial_logsumexp(np.empty((B, 0), H.dtype))
    x_true = np.zeros(B, H.dtype)
    x_sum = np.zeros(B, H.dtype)
    for c0 in starts:
        Xc = H @ W[c0 : c0 + step].T  # (B, n_c): the only logits alive
        state = merge_logsumexp(state, partial_logsumexp(Xc))
        here = (a.labels >= c0) & (a.labels < c0 + Xc.shape[1])
        x_true[here] = Xc[rows[here], a.labels[here] - c0]
        if a.eps > 0:
            x_sum += Xc.sum(axis=1)
    lse = finish_logsumexp(state)
    with np.errstate(invalid="ignore"):  # inf - inf for a row with a +inf logit: NaN
        loss_rows = lse - (1 - a.eps) * x_true
        if a.eps > 0:
            loss_rows = loss_rows - a.eps / n * x_sum
    loss = _reduce(loss_rows, a.valid, a.reduction, a.denom)

    # Pass 2: each chunk's dX_c from the final lse, folded into dH and dW_c at once.
    dH = np.zeros((B, d), H.dtype)
    dW = np.empty((n, d), H.dtype)
    col = a.coef[:, None]
    for c0 in starts:
        Wc = W[c0 : c0 + step]
        Xc = H @ Wc.T
        Xc -= lse[:, None]
        np.exp(Xc, out=Xc)  # Y_c, the chunk's probabilities
        if a.eps > 0:
            Xc -= H.dtype.type(a.eps / n)
        here = (a.labels >= c0) & (a.labels < c0 + Xc.shape[1])
        Xc[rows[here], a.labels[here] - c0] -= H.dtype.type(1 - a.eps)
        Xc *= col  # dX_c: row r scaled by ell_bar_r s_r (0 for ignored rows)
        dH += Xc @ Wc
        np.matmul(Xc.T, H, out=dW[c0 : c0 + step])
        del Xc  # else the next chunk's logits are computed while these are still alive
    return VocabHeadResult(loss, dH, dW)


def vocab_head_cross_entropy_naive(
    H,
    W,
    labels,
    *,
    ell_bar=None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> VocabHeadResult:
    r"""The same loss and gradients as :func:`vocab_head_cross_entropy`, from the full logits.

    :math:`X = \mathbf H\mathbf W^\top` (B, n), :math:`Y = \operatorname{softmax}(X)`, the loss
    and :math:`dY` from :func:`softmax_grad.cross_entropy`, :math:`dX` from
    :func:`softmax_grad.softmax_vjp` of :math:`\bar\ell_r\,dY_r`, then
    :math:`d\mathbf H = dX\,\mathbf W` and :math:`d\mathbf W = dX^\top\mathbf H`. It holds
    several B x n arrays at once; the reference the chunked path is checked against. The loss
    takes :math:`\log y`, so it is ``inf`` where a probability underflows to 0.

    Parameters and returns as :func:`vocab_head_cross_entropy` (without ``chunk``).
    """
    a = _arguments(H, W, labels, ell_bar, ignore_index, label_smoothing, reduction)
    X = a.H @ a.W.T
    Y = softmax(X)
    loss, dY = cross_entropy(
        Y, labels, ignore_index=ignore_index, label_smoothing=a.eps, reduction=a.reduction
    )
    # cross_entropy's dY already carries s_r; ell_bar_r is what remains of coef = ell_bar_r s_r.
    upstream = _upstream(ell_bar, a.reduction, a.H.shape[0], a.H.dtype)
    dY *= np.where(a.valid, upstream, 0)[:, None]
    dX = softmax_vjp(Y, dY)
    return VocabHeadResult(loss, dX @ a.W, dX.T @ a.H)
