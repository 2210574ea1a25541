r"""The loss-independent backward pass of softmax and log-softmax: vector-Jacobian products.

For :math:`y = \mathrm{softmax}(x)` and an upstream gradient :math:`dy = \partial L/\partial y`,
:math:`dx = J^\top dy = y \odot (dy - \langle y, dy\rangle)`: O(n) per row, no n-by-n matrix.
"""

from __future__ import annotations

import numpy as np

from ._validation import as_float_array, normalize_axis, same_shape


def _pair(a, b, name_a: str, name_b: str, axis: int) -> tuple[np.ndarray, np.ndarray, int]:
    a = as_float_array(a, name_a)
    b = as_float_array(b, name_b)
    same_shape(a, b, name_a, name_b)
    return a, b, normalize_axis(axis, a.ndim)


def softmax_vjp(y, dy, axis: int = -1) -> np.ndarray:
    r"""Backward of softmax: :math:`dx = y \odot (dy - \sum_j y_j\,dy_j)` along ``axis``.

    Parameters
    ----------
    y : array_like, shape (..., n, ...)
        The softmax output of the forward pass.
    dy : array_like, same shape as ``y``
        Gradient of any loss with respect to ``y``.
    axis : int, default -1
        The softmax axis.

    Returns
    -------
    dx : ndarray, same shape as ``y``
        Gradient of the loss with respect to the logits, equal to :math:`J^\top dy` with
        :math:`J = \operatorname{diag}(y) - y y^\top` (symmetric), computed in O(n).

    Raises
    ------
    ValueError
        If the shapes differ (both are shown) or ``axis`` is out of range.
    """
    y, dy, ax = _pair(y, dy, "y", "dy", axis)
    dot = np.sum(y * dy, axis=ax, keepdims=True)
    return y * (dy - dot)


def log_softmax_vjp(logp, dy, axis: int = -1) -> np.ndarray:
    r"""Backward of log-softmax: :math:`dx = dy - e^{\log p}\sum_j dy_j` along ``axis``.

    Parameters
    ----------
    logp : array_like, shape (..., n, ...)
        The log-softmax output of the forward pass.
    dy : array_like, same shape as ``logp``
        Gradient of any loss with respect to ``logp``.
    axis : int, default -1
        The softmax axis.

    Returns
    -------
    dx : ndarray, same shape as ``logp``
        The Jacobian of log-softmax is :math:`I - \mathbf{1} p^\top`, so
        :math:`dx = dy - p \sum_j dy_j`.
    """
    logp, dy, ax = _pair(logp, dy, "logp", "dy", axis)
    return dy - np.exp(logp) * np.sum(dy, axis=ax, keepdims=True)
