"""Softmax and LogSoftmax as layers: ``forward`` caches its output, ``backward`` is the VJP."""

from __future__ import annotations

import numpy as np

from .forward import log_softmax, softmax
from .vjp import log_softmax_vjp, softmax_vjp


class _Layer:
    """Common state: the softmax axis and the output cached by the last ``forward``."""

    def __init__(self, axis: int = -1):
        self.axis = axis
        self._out: np.ndarray | None = None

    def _cached(self) -> np.ndarray:
        if self._out is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward(dy) was called before forward(x): "
                "the backward pass needs the output of a forward pass"
            )
        return self._out


class Softmax(_Layer):
    r"""Softmax layer, :math:`y = \mathrm{softmax}(x)`, with the loss-independent backward.

    ``backward(dy)`` returns :math:`dx = y \odot (dy - \langle y, dy\rangle)`.

    Parameters
    ----------
    axis : int, default -1
        The softmax axis.
    """

    def forward(self, x) -> np.ndarray:
        """Return ``softmax(x)`` (shape of ``x``) and keep it for ``backward``."""
        self._out = softmax(x, axis=self.axis)
        return self._out

    def backward(self, dy) -> np.ndarray:
        """Return ``dL/dx`` (shape of ``dy``) from ``dy = dL/dy``, whatever the loss ``L``."""
        return softmax_vjp(self._cached(), dy, axis=self.axis)


class LogSoftmax(_Layer):
    r"""Log-softmax layer, :math:`\log p = x - \operatorname{logsumexp}(x)`.

    ``backward(dy)`` returns :math:`dx = dy - p \sum_j dy_j`.

    Parameters
    ----------
    axis : int, default -1
        The softmax axis.
    """

    def forward(self, x) -> np.ndarray:
        """Return ``log_softmax(x)`` (shape of ``x``) and keep it for ``backward``."""
        self._out = log_softmax(x, axis=self.axis)
        return self._out

    def backward(self, dy) -> np.ndarray:
        """Return ``dL/dx`` (shape of ``dy``) from ``dy = dL/d(log p)``."""
        return log_softmax_vjp(self._cached(), dy, axis=self.axis)
