r"""The online softmax: a row's log-sum-exp as a state updated block by block (Milakov and
Gimelshein, 2018).

A block of logits :math:`x_j, j \in A` is summarised by the state :math:`(m_A, Z_A)`:

.. math:: m_A = \max_{j \in A} x_j, \qquad Z_A = \sum_{j \in A} e^{x_j - m_A},

so :math:`\log\sum_{j \in A} e^{x_j} = m_A + \log Z_A`. Two disjoint blocks :math:`A, A'` merge
without revisiting their logits:

.. math:: m_{A \cup A'} = \max(m_A, m_{A'}), \qquad
   Z_{A \cup A'} = Z_A e^{m_A - m_{A \cup A'}} + Z_{A'} e^{m_{A'} - m_{A \cup A'}},

and every exponent is :math:`\le 0`, so nothing overflows. The merge is associative and
commutative (up to rounding), which is what lets a kernel read a row once for its maximum and
its sum, FlashAttention fold key blocks into a query's row, and a vocabulary head fold
vocabulary chunks into a token's loss.

Non-finite logits follow :mod:`softmax_grad.forward`: a state whose maximum is not finite is
kept relative to 0 instead of its maximum (so an all ``-inf`` block is ``(-inf, 0)``, the
identity of the merge), a ``+inf`` logit makes the sum infinite (log-sum-exp ``+inf``, softmax
NaN), and NaN propagates.
"""

from __future__ import annotations

import numpy as np

from ._validation import as_float_array, as_mask, as_working, normalize_axis, returned

#: Logits per block of online_logsumexp and online_softmax by default.
DEFAULT_BLOCK = 1024


def _shift(m):
    """The value a state's sum is relative to: its maximum, or 0 when that is not finite."""
    return np.where(np.isfinite(m), m, 0).astype(np.result_type(m), copy=False)


def partial_logsumexp(x, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    r"""The state :math:`(m, Z)` of a block of logits along ``axis``.

    Parameters
    ----------
    x : array_like, shape (..., n, ...)
        Logits (float32 and float64 stay; integers become float64). ``n`` may be 0, which gives
        the empty block's state ``(-inf, 0)``.
    axis : int, default -1

    Returns
    -------
    m, Z : ndarray, shape of ``x`` without ``axis``
        :math:`m = \max_j x_j` and :math:`Z = \sum_j e^{x_j - \hat m}`, where
        :math:`\hat m = m` if finite and 0 otherwise.
    """
    x = as_float_array(x, "x")
    ax = normalize_axis(axis, x.ndim)
    if x.shape[ax] == 0:
        shape = x.shape[:ax] + x.shape[ax + 1 :]
        return np.full(shape, -np.inf, x.dtype), np.zeros(shape, x.dtype)
    m = np.max(x, axis=ax)
    with np.errstate(invalid="ignore", over="ignore"):
        s = np.sum(np.exp(x - np.expand_dims(_shift(m), ax)), axis=ax)
    return m, s


def merge_logsumexp(a, b) -> tuple[np.ndarray, np.ndarray]:
    r"""The state of the union of two disjoint blocks, from their states ``a`` and ``b``.

    :math:`m = \max(m_a, m_b)`, :math:`Z = Z_a e^{\hat m_a - \hat m} + Z_b e^{\hat m_b - \hat m}`.
    An empty block, ``(-inf, 0)``, is the identity: its term is 0, never ``0 * inf``.

    Parameters
    ----------
    a, b : tuple of ndarray ``(m, Z)``, broadcastable shapes

    Returns
    -------
    m, Z : ndarray
    """
    (ma, sa), (mb, sb) = a, b
    m = np.maximum(ma, mb)  # NaN propagates
    h = _shift(m)
    with np.errstate(invalid="ignore", over="ignore"):
        ta = np.where(sa == 0, 0, sa * np.exp(_shift(ma) - h))
        tb = np.where(sb == 0, 0, sb * np.exp(_shift(mb) - h))
    return m, ta + tb


def finish_logsumexp(state) -> np.ndarray:
    r""":math:`\hat m + \log Z`, the log-sum-exp of a state: ``-inf`` for an empty or all
    ``-inf`` block, ``+inf`` if a logit is ``+inf``, NaN if one is NaN."""
    m, s = state
    with np.errstate(divide="ignore", invalid="ignore"):
        return _shift(m) + np.log(s)


def _merged(x: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """The state of the last axis of ``x``, merged left to right from blocks of ``block``."""
    if not isinstance(block, (int, np.integer)) or isinstance(block, bool) or block < 1:
        raise ValueError(f"block must be an integer >= 1, got {block!r}")
    block = int(block)
    state = partial_logsumexp(x[..., :0])
    for j in range(0, max(x.shape[-1], 1), block):
        state = merge_logsumexp(state, partial_logsumexp(x[..., j : j + block]))
    return state


def online_logsumexp(x, axis: int = -1, block: int = DEFAULT_BLOCK) -> np.ndarray:
    r""":math:`\log\sum_j e^{x_j}` along ``axis``, reading ``x`` once, ``block`` logits at a time.

    Parameters
    ----------
    x : array_like, shape (..., n, ...)
        Logits; float16 and bfloat16 are computed in float32 and rounded once.
    axis : int, default -1
    block : int >= 1, default 1024 (``softmax_grad.online.DEFAULT_BLOCK``)
        Logits per block; the result does not depend on it beyond rounding.

    Returns
    -------
    lse : ndarray, shape of ``x`` without ``axis``
    """
    (x,), back = as_working([x], ["x"])
    ax = normalize_axis(axis, x.ndim)
    return returned(finish_logsumexp(_merged(np.moveaxis(x, ax, -1), block)), back)


def online_softmax(x, axis: int = -1, block: int = DEFAULT_BLOCK, where=None) -> np.ndarray:
    r"""Softmax along ``axis`` in two passes: the state :math:`(m, Z)` merged block by block,
    then :math:`y_i = e^{x_i - \hat m} / Z`.

    The same function as :func:`softmax_grad.softmax` (equal up to rounding), including its
    conventions for ``-inf`` (probability 0), ``+inf`` and NaN (the row is NaN) and ``where``
    (a row with nothing kept is all zeros).

    Parameters
    ----------
    x : array_like, shape (..., n, ...)
        Logits; float16 and bfloat16 are computed in float32 and rounded once.
    axis : int, default -1
    block : int >= 1, default 1024 (``softmax_grad.online.DEFAULT_BLOCK``)
    where : array_like of bool, optional
        A mask broadcasting against ``x``; True keeps an entry.

    Returns
    -------
    y : ndarray, shape of ``x``
    """
    (x,), back = as_working([x], ["x"])
    ax = normalize_axis(axis, x.ndim)
    mask = as_mask(where, x.shape)
    if mask is not None:
        x = np.where(mask, x, -np.inf)
    xt = np.moveaxis(x, ax, -1)
    m, s = _merged(xt, block)
    s = np.where(np.isposinf(s), np.nan, s)  # a +inf logit: no defined softmax
    if mask is not None:  # nothing kept: probability 0, as softmax(where=)
        s = np.where(np.any(np.moveaxis(mask, ax, -1), axis=-1), s, 1)
    with np.errstate(invalid="ignore", over="ignore"):
        y = np.exp(xt - _shift(m)[..., None]) / s[..., None]
    return returned(np.moveaxis(y, -1, ax), back)
