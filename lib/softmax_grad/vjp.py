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


_BOUND_ALGORITHMS = ("vjp", "quadratic")


def vjp_error_bound(y, dy, dtype=None, axis: int = -1, algorithm: str = "vjp") -> np.ndarray:
    r"""Rigorous elementwise bound on the rounding error of a softmax VJP computed in ``dtype``.

    For the O(n) formula :math:`dx_i = y_i\,(dy_i - \langle y, dy\rangle)` evaluated in floating
    point with unit roundoff :math:`u` (:math:`2^{-24}` float32, :math:`2^{-53}` float64), the
    standard analysis {Higham, *Accuracy and Stability of Numerical Algorithms*, §3.1} gives

    .. math::

        |\widehat{dx}_i - dx_i| \le |y_i|\,\bigl(\gamma_{n+2}\,S + \gamma_2\,
        |dy_i - \langle y, dy\rangle|\bigr) + (n + 3)\,\eta,
        \qquad S = \sum_j |y_j\,dy_j|,\quad \gamma_k = \frac{ku}{1 - ku},

    with :math:`\eta` the smallest subnormal. Derivation: a dot product of :math:`n` terms,
    summed in *any* order, with or without FMA, is within :math:`\gamma_n S` of the exact one;
    the subtraction and the product add one rounding each,
    :math:`\widehat{dx}_i = y_i(dy_i - \widehat{d})(1+\theta_2)`, and
    :math:`\gamma_n(1 + \gamma_2) \le \gamma_{n+2}`. Each operation that underflows adds at most
    :math:`\eta`. The bound holds for every summation order, so for every ISA path and
    alignment of :func:`softmax_grad.native.softmax_vjp`.

    ``algorithm="quadratic"`` bounds the O(n²) form
    :math:`dx_i = \sum_j (-y_i y_j)\,dy_j + y_i\,dy_i` (two roundings per term in a sum of
    :math:`n`, the diagonal term and the final addition):
    :math:`\gamma_{n+3}\,|y_i|\,(S + |dy_i|) + (n + 4)\,\eta`.

    The bound is evaluated in float64 from the given ``y`` and ``dy`` (the exact inputs of the
    computation) and enlarged by a relative :math:`10^{-6}`, which covers that evaluation's own
    rounding. Compare the computed result with a float64 reference of the same inputs (whose
    error, bounded by this function with ``dtype=float64``, is negligible for float32).

    Parameters
    ----------
    y, dy : array_like, same shape (..., n, ...)
        The inputs of the VJP.
    dtype : dtype, optional
        The arithmetic's dtype; default float32 when both inputs are float32, else float64.
    axis : int, default -1
        The softmax axis.
    algorithm : {"vjp", "quadratic"}

    Returns
    -------
    bound : ndarray, float64, shape of ``y``
        NaN or inf where the inputs' row is not finite (no bound applies there).

    Raises
    ------
    ValueError
        If the shapes differ, ``axis`` is out of range, ``algorithm`` is unknown, or ``dtype``
        is not a floating dtype.
    """
    y, dy, ax = _pair(y, dy, "y", "dy", axis)
    if algorithm not in _BOUND_ALGORITHMS:
        allowed = ", ".join(_BOUND_ALGORITHMS)
        raise ValueError(f"unknown algorithm={algorithm!r}; allowed: {allowed}")
    dt = np.result_type(y, dy, np.float32) if dtype is None else np.dtype(dtype)
    if dt.kind != "f":
        raise ValueError(f"dtype must be a floating dtype, got {dt}")
    info = np.finfo(dt)
    u = float(info.eps) / 2
    n = y.shape[ax]

    def gamma(k: int) -> float:
        return k * u / (1 - k * u)

    y64, dy64 = y.astype(np.float64), dy.astype(np.float64)
    eta = float(info.smallest_subnormal)
    with np.errstate(invalid="ignore", over="ignore"):
        s = np.sum(np.abs(y64 * dy64), axis=ax, keepdims=True)
        if algorithm == "vjp":
            d = np.abs(dy64 - np.sum(y64 * dy64, axis=ax, keepdims=True))
            bound = np.abs(y64) * (gamma(n + 2) * s + gamma(2) * d) + (n + 3) * eta
        else:
            bound = gamma(n + 3) * np.abs(y64) * (s + np.abs(dy64)) + (n + 4) * eta
    return bound * (1 + 1e-6)
