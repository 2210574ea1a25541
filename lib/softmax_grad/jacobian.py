r"""The softmax Jacobian :math:`J_{ij} = \partial y_i / \partial x_j = y_i(\delta_{ij} - y_j)`.

Three ways to build it (a double loop, a matrix formula, a batched einsum) and the tempting
elementwise "derivative" that keeps only its diagonal.
"""

from __future__ import annotations

import numpy as np

from ._validation import as_float_array
from .forward import softmax


def _probability_vector(s) -> np.ndarray:
    s = as_float_array(s, "s")
    if s.ndim != 1:
        raise ValueError(
            f"s must be a 1-D vector of probabilities with shape (n,), got shape {s.shape}; "
            "use jacobian_einsum for batches"
        )
    return s


def jacobian_iterative(s) -> np.ndarray:
    r"""The Jacobian by a double loop over :math:`i, j`, as a learner first writes it.

    Parameters
    ----------
    s : array_like, shape (n,)
        Softmax output (probabilities).

    Returns
    -------
    J : ndarray, shape (n, n)
        :math:`J_{ij} = s_i(1 - s_i)` if :math:`i = j`, else :math:`-s_i s_j`.
    """
    s = _probability_vector(s)
    n = s.shape[0]
    jac = np.empty((n, n), dtype=s.dtype)
    for i in range(n):
        for j in range(n):
            if i == j:
                jac[i, j] = s[i] * (1 - s[i])
            else:
                jac[i, j] = -s[i] * s[j]
    return jac


def jacobian_vectorized(s) -> np.ndarray:
    r"""The Jacobian as one matrix formula: :math:`J = \operatorname{diag}(s) - s s^\top`.

    Parameters
    ----------
    s : array_like, shape (n,)
        Softmax output (probabilities).

    Returns
    -------
    J : ndarray, shape (n, n)
    """
    s = _probability_vector(s)
    return np.diag(s) - np.outer(s, s)


def jacobian_einsum(s) -> np.ndarray:
    r"""Batched Jacobians: :math:`J_{\dots ij} = s_{\dots i}\delta_{ij} - s_{\dots i}s_{\dots j}`.

    Parameters
    ----------
    s : array_like, shape (..., n)
        Softmax outputs along the last axis; any number of leading (batch) axes.

    Returns
    -------
    J : ndarray, shape (..., n, n)
        One Jacobian per row; memory grows as rows * n**2.
    """
    s = as_float_array(s, "s")
    if s.ndim == 0:
        raise ValueError("s must have at least one dimension (the softmax axis), got a 0-d array")
    eye = np.eye(s.shape[-1], dtype=s.dtype)
    return np.einsum("...i,ij->...ij", s, eye) - np.einsum("...i,...j->...ij", s, s)


def diagonal_only_derivative(x, axis: int = -1) -> np.ndarray:
    r"""The elementwise "derivative" :math:`s_i(1 - s_i)`: only the Jacobian's diagonal.

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
        :math:`s(1-s)` with :math:`s = \mathrm{softmax}(x)`.
    """
    s = softmax(x, axis=axis)
    return s * (1 - s)
