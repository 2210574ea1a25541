r"""The softmax Jacobian :math:`J_{ij} = \partial y_i / \partial x_j = y_i(\delta_{ij} - y_j)`.

Three ways to build it (a double loop, a matrix formula, a batched einsum) and the tempting
elementwise "derivative" that keeps only its diagonal.
"""

from __future__ import annotations

import numpy as np

from ._validation import as_float_array
from .forward import softmax


def _probability_vector(y) -> np.ndarray:
    y = as_float_array(y, "y")
    if y.ndim != 1:
        raise ValueError(
            f"y must be a 1-D vector of probabilities with shape (n,), got shape {y.shape}; "
            "use jacobian_einsum for batches"
        )
    return y


def jacobian_iterative(y) -> np.ndarray:
    r"""The Jacobian by a double loop over :math:`i, j`, as a learner first writes it.

    Parameters
    ----------
    y : array_like, shape (n,)
        Softmax output (probabilities).

    Returns
    -------
    J : ndarray, shape (n, n)
        :math:`J_{ij} = y_i(1 - y_i)` if :math:`i = j`, else :math:`-y_i y_j`.
    """
    y = _probability_vector(y)
    n = y.shape[0]
    jac = np.empty((n, n), dtype=y.dtype)
    for i in range(n):
        for j in range(n):
            if i == j:
                jac[i, j] = y[i] * (1 - y[i])
            else:
                jac[i, j] = -y[i] * y[j]
    return jac


def jacobian_vectorized(y) -> np.ndarray:
    r"""The Jacobian as one matrix formula: :math:`J = \operatorname{diag}(y) - y y^\top`.

    Parameters
    ----------
    y : array_like, shape (n,)
        Softmax output (probabilities).

    Returns
    -------
    J : ndarray, shape (n, n)
    """
    y = _probability_vector(y)
    return np.diag(y) - np.outer(y, y)


def jacobian_einsum(y) -> np.ndarray:
    r"""Batched Jacobians: :math:`J_{\dots ij} = y_{\dots i}\delta_{ij} - y_{\dots i}y_{\dots j}`.

    Parameters
    ----------
    y : array_like, shape (..., n)
        Softmax outputs along the last axis; any number of leading (batch) axes.

    Returns
    -------
    J : ndarray, shape (..., n, n)
        One Jacobian per row; memory grows as rows * n**2.
    """
    y = as_float_array(y, "y")
    if y.ndim == 0:
        raise ValueError("y must have at least one dimension (the softmax axis), got a 0-d array")
    eye = np.eye(y.shape[-1], dtype=y.dtype)
    return np.einsum("...i,ij->...ij", y, eye) - np.einsum("...i,...j->...ij", y, y)


def diagonal_only_derivative(x, axis: int = -1) -> np.ndarray:
    r"""The elementwise "derivative" :math:`y_i(1 - y_i)`: only the Jacobian's diagonal.

    This is what the source thread's question computes (its ``delta`` simplifies to it). It
    ignores that every output depends on every input through the shared denominator, so a
    backward pass built on it is wrong; it is kept so the book can show exactly how wrong.

    Parameters
    ----------
    x : array_like, shape (..., n)
        Logits.
    axis : int, default -1
        The softmax axis.

    Returns
    -------
    d : ndarray, same shape as ``x``
        :math:`y(1-y)` with :math:`y = \mathrm{softmax}(x)`.
    """
    y = softmax(x, axis=axis)
    return y * (1 - y)
