r"""Losses that return their value and their gradient, to compose with any layer's backward.

Probabilities and logits have shape (..., n) with the classes on the last axis; labels have the
leading shape (...) and hold integers in ``[0, n)``. Losses are means over the B = labels.size
rows (or over all elements for MSE).
"""

from __future__ import annotations

import numpy as np

from ._validation import as_float_array, same_shape
from .forward import _exp_sum


def mse(y, target) -> tuple[np.floating, np.ndarray]:
    r"""Mean squared error :math:`L = \frac{1}{N}\sum (y - t)^2` over all N elements.

    Returns
    -------
    loss : NumPy scalar
        Complex for complex input, so the loss works with complex-step differentiation.
    dloss_dy : ndarray, shape of ``y``
        :math:`2(y - t)/N`.
    """
    y = as_float_array(y, "y")
    target = as_float_array(target, "target")
    same_shape(y, target, "y", "target")
    if y.size == 0:
        raise ValueError("mse needs at least one element, got an empty array")
    diff = y - target
    return np.mean(diff**2), 2 * diff / y.size


def _labels(labels, scores: np.ndarray, name: str) -> np.ndarray:
    """Check integer labels of shape scores.shape[:-1] with values in [0, n)."""
    lab = np.asarray(labels)
    if lab.dtype.kind not in "iu":
        raise TypeError(f"labels must be integers (class indices), got dtype {lab.dtype}")
    if scores.ndim == 0:
        raise ValueError(f"{name} must have shape (..., n) with classes last, got a 0-d array")
    if lab.shape != scores.shape[:-1]:
        raise ValueError(
            f"labels must have shape {scores.shape[:-1]} (the leading axes of {name}.shape="
            f"{scores.shape}), got labels.shape={lab.shape}"
        )
    if lab.size == 0:
        raise ValueError("cross-entropy needs at least one label, got none")
    n = scores.shape[-1]
    bad = (lab < 0) | (lab >= n)
    if np.any(bad):
        raise ValueError(f"labels must lie in [0, {n}) for {n} classes, got {lab[bad].ravel()[0]}")
    return lab


def _onehot(labels: np.ndarray, n: int, dtype) -> np.ndarray:
    return (labels[..., None] == np.arange(n)).astype(dtype)


def cross_entropy(probs, labels) -> tuple[np.floating, np.ndarray]:
    r"""Cross-entropy of probabilities: :math:`L = -\frac{1}{B}\sum_b \log p_{b, c_b}`.

    Returns
    -------
    loss : NumPy scalar
        ``inf`` if a true class has probability 0.
    dloss_dprobs : ndarray, shape of ``probs``
        :math:`-1/(B\,p_{b,c_b})` at each true class, 0 elsewhere.
    """
    probs = as_float_array(probs, "probs")
    lab = _labels(labels, probs, "probs")
    p_true = np.take_along_axis(probs, lab[..., None], axis=-1)
    batch = lab.size
    with np.errstate(divide="ignore"):
        loss = -np.sum(np.log(p_true)) / batch
        grad = np.where(_onehot(lab, probs.shape[-1], bool), -1.0 / (batch * p_true), 0)
    return loss, grad.astype(probs.dtype, copy=False)


def softmax_cross_entropy(logits, labels) -> tuple[np.floating, np.ndarray]:
    r"""Fused softmax + cross-entropy on logits, through log-sum-exp.

    Returns
    -------
    loss : NumPy scalar
        :math:`-\frac{1}{B}\sum_b \log\mathrm{softmax}(x_b)_{c_b}`, finite for any finite logits.
    dloss_dlogits : ndarray, shape of ``logits``
        :math:`(\mathrm{softmax}(x) - \mathrm{onehot}(c)) / B`.
    """
    logits = as_float_array(logits, "logits")
    lab = _labels(labels, logits, "logits")
    batch = lab.size
    # One pass of exponentials serves both outputs: log p of the true class, z_c - log(sum e),
    # stays finite where p underflows to 0; the gradient is p/B with 1/B taken off at the label.
    shifted, e, total = _exp_sum(logits, -1)
    idx = lab[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        loss = -np.sum(np.take_along_axis(shifted, idx, axis=-1) - np.log(total)) / batch
        grad = e / (total * logits.dtype.type(batch))
    np.put_along_axis(grad, idx, np.take_along_axis(grad, idx, axis=-1) - 1 / batch, axis=-1)
    return loss, grad
